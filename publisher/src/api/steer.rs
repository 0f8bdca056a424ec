//! Segmentations people steer (bearer token for every change): definitions created,
//! edited and retired through the API, drafts computed beside the live segmentation
//! without publishing, promotion and discard, and outlets pinned by hand. Every change
//! is a new stored version ([`spectra_core::tables::definitions`]): who, when, what;
//! the aggregator and the segmenter read the definitions every pass, so a change runs
//! without a restart.
//!
//! | route | what |
//! |---|---|
//! | `POST /api/segmentations` | create: `{"definition": {…}, "by", "note"}` |
//! | `GET /api/segmentations/{name}/definition` | the current version and the history |
//! | `PUT /api/segmentations/{name}/definition` | edit: `{"changes": {…}, "version"?, "by", "note"}` |
//! | `DELETE /api/segmentations/{name}/definition` | retire |
//! | `POST /api/segmentations/{name}/drafts` | open a draft: `{"changes": {…}, "by", "note"}` |
//! | `GET /api/segmentations/{name}/drafts` | the drafts, open and closed, with their runs |
//! | `POST /api/segmentations/{name}/drafts/{draft}/promote` | the draft's parameters go live |
//! | `POST /api/segmentations/{name}/drafts/{draft}/discard` | close a draft |
//! | `GET /api/segmentations/{name}/pins` | pinned outlets |
//! | `PUT /api/segmentations/{name}/pins/{outlet}` | pin: `{"segment_id", "by", "note"}` |
//! | `DELETE /api/segmentations/{name}/pins/{outlet}` | unpin |
//! | `POST /api/segmentations/{name}/segments/{id}/merge` | merge `{id}` into `{"into": "S2"}` |
//! | `POST /api/segmentations/{name}/segments/{id}/split` | split `{id}` in two |
//!
//! A merge or split fixes `k` to the number of segments after it; the next run
//! applies it (`spectra_core::tables::definitions::Operation`).
//!
//! `version` in an edit is the version the caller read: when another change landed
//! since, the edit is refused with 409 rather than overwriting it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use spectra_core::config::{KSpec, SegmentationConfig};
use spectra_core::tables::definitions::{
    self, Action, Appended, DefinitionVersion, Operation, Source,
};

use super::{guard, ApiError, ApiResult, AppState};

/// Who and why: `by` (1–200 characters, `api` when absent) and `note`, in every
/// change's body.
fn author(by: &Option<String>, note: &Option<String>) -> ApiResult<(String, String)> {
    let by = by.clone().unwrap_or_else(|| "api".into());
    let note = note.clone().unwrap_or_default();
    if by.trim().is_empty() || by.chars().count() > 200 || note.chars().count() > 2000 {
        return Err(bad(
            "`by` is 1–200 characters and `note` at most 2000".into()
        ));
    }
    Ok((by, note))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    definition: Value,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    #[serde(default)]
    changes: Map<String, Value>,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinBody {
    segment_id: String,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    into: String,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorOnly {
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

fn parse<T: DeserializeOwned + Default>(body: &Bytes, example: &str) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "the body is not valid ({e}); send JSON like {example}"
        ))
    })
}

/// A definition's problems (or a core error) as a response.
fn refused(e: spectra_core::Error) -> ApiError {
    match e {
        spectra_core::Error::Config(problems) => bad(problems.join("; ")),
        e => e.into(),
    }
}

async fn write(s: &AppState, next: DefinitionVersion) -> ApiResult<DefinitionVersion> {
    match definitions::append(s.snapshots.storage(), next)
        .await
        .map_err(refused)?
    {
        Appended::Written(v) => {
            tracing::info!(segmentation = %v.name, version = v.version, action = ?v.action, by = %v.by,
                note = %v.note, "segmentation definition changed");
            s.changed.notify_one();
            Ok(*v)
        }
        Appended::Conflict => Err(conflict(
            "another change to this segmentation landed first; read it again and retry".into(),
        )),
    }
}

/// The current version of `name`, or 404.
async fn current(s: &AppState, name: &str) -> ApiResult<DefinitionVersion> {
    definitions::current(s.snapshots.storage(), name)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("segmentation `{name}` has no stored definition"),
            )
        })
}

/// The current live definition of `name` (not retired, not a draft), or an error.
async fn live(s: &AppState, name: &str) -> ApiResult<(DefinitionVersion, SegmentationConfig)> {
    let cur = current(s, name).await?;
    if cur.is_draft() {
        return Err(bad(format!(
            "`{name}` is a draft; change it through its segmentation"
        )));
    }
    let def = cur.definition.clone().ok_or_else(|| {
        conflict(format!(
            "segmentation `{name}` is retired (version {})",
            cur.version
        ))
    })?;
    Ok((cur, def))
}

/// `def` with `changes` applied (keys of the definition; `name` cannot change).
fn changed(
    def: &SegmentationConfig,
    changes: &Map<String, Value>,
) -> ApiResult<SegmentationConfig> {
    if changes.contains_key("name") {
        return Err(bad(
            "a segmentation's name cannot change; create a new one".into()
        ));
    }
    let mut v = serde_json::to_value(def).map_err(|e| bad(e.to_string()))?;
    let obj = v.as_object_mut().expect("a definition is an object");
    for (k, x) in changes {
        obj.insert(k.clone(), x.clone());
    }
    let next: SegmentationConfig =
        serde_json::from_value(v).map_err(|e| bad(format!("the changes are not valid: {e}")))?;
    refuse_problems(&next)?;
    Ok(next)
}

/// A definition written through the API: every problem [`SegmentationConfig::check`]
/// names, and a filter that is not one predicate over one outlet's fields (which the
/// aggregator would refuse on every pass), as a 400.
fn refuse_problems(def: &SegmentationConfig) -> ApiResult<()> {
    let mut problems = def.check();
    problems.extend(def.filter_problem());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(bad(problems.join("; ")))
    }
}

/// `POST /api/segmentations`.
pub(super) async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<DefinitionVersion>)> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
    let b: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        bad(format!("the body is not valid ({e}); send JSON like {{\"definition\": {{\"name\": \"brand-mix\", \"level\": \"brand\", \"k\": 6}}, \"by\": \"ana\"}}"))
    })?;
    let (by, note) = author(&b.by, &b.note)?;
    let def: SegmentationConfig = serde_json::from_value(b.definition)
        .map_err(|e| bad(format!("the definition is not valid: {e}")))?;
    refuse_problems(&def)?;
    let storage = s.snapshots.storage();
    let next = match definitions::current(storage, &def.name).await? {
        None => {
            let name = def.name.clone();
            let mut v = definitions::first(&name, &by, Source::Api, Action::Created, def);
            v.note = note;
            v
        }
        Some(c) if c.definition.is_none() && !c.is_draft() => {
            c.next(&by, Source::Api, Action::Created, &note, Some(def))
        }
        Some(c) => {
            return Err(conflict(format!(
                "segmentation `{}` exists (version {}); edit it with PUT /api/segmentations/{}/definition",
                c.name, c.version, c.name
            )))
        }
    };
    Ok((StatusCode::CREATED, Json(write(&s, next).await?)))
}

/// `GET /api/segmentations/{name}/definition`.
pub(super) async fn definition(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let cur = current(&s, &name).await?;
    let history = definitions::history(s.snapshots.storage(), &name).await?;
    Ok(Json(json!({
        "name": name,
        "current": cur,
        "history": history,
    })))
}

/// `PUT /api/segmentations/{name}/definition`.
pub(super) async fn edit(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<DefinitionVersion>> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
    let b: ChangeBody = parse(
        &body,
        "{\"changes\": {\"k\": 7}, \"version\": 3, \"by\": \"ana\"}",
    )?;
    let (by, note) = author(&b.by, &b.note)?;
    let (cur, def) = live(&s, &name).await?;
    if let Some(v) = b.version.filter(|v| *v != cur.version) {
        return Err(conflict(format!(
            "you edited version {v}, but version {} is current; read it again",
            cur.version
        )));
    }
    let next = changed(&def, &b.changes)?;
    if next == def {
        return Err(bad("the changes change nothing".into()));
    }
    let v = cur.next(&by, Source::Api, Action::Edited, &note, Some(next));
    Ok(Json(write(&s, v).await?))
}

/// `DELETE /api/segmentations/{name}/definition`.
pub(super) async fn retire(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<DefinitionVersion>> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
    let b: AuthorOnly = parse(
        &body,
        "{\"by\": \"ana\", \"note\": \"replaced by brand-mix\"}",
    )?;
    let (by, note) = author(&b.by, &b.note)?;
    let (cur, _) = live(&s, &name).await?;
    let v = cur.next(&by, Source::Api, Action::Retired, &note, None);
    Ok(Json(write(&s, v).await?))
}

/// `POST /api/segmentations/{name}/drafts`.
pub(super) async fn open_draft(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<DefinitionVersion>)> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
    let b: ChangeBody = parse(
        &body,
        "{\"changes\": {\"level\": \"brand\", \"k\": 5}, \"by\": \"ana\"}",
    )?;
    let (by, note) = author(&b.by, &b.note)?;
    let (_, def) = live(&s, &name).await?;
    let draft_def = changed(&def, &b.changes)?;
    let v = definitions::open_draft(s.snapshots.storage(), &name, &by, &note, draft_def)
        .await
        .map_err(refused)?;
    tracing::info!(segmentation = %name, draft = %v.name, by = %by, "draft opened");
    s.changed.notify_one();
    Ok((StatusCode::CREATED, Json(v)))
}

/// A draft's status for people: `open`, `promoted` or `discarded`.
fn status(d: &DefinitionVersion) -> &'static str {
    match (&d.definition, d.action) {
        (Some(_), _) => "open",
        (None, Action::Promoted) => "promoted",
        (None, _) => "discarded",
    }
}

/// The draft's latest run, if made with its current definition.
async fn ready_run(s: &AppState, d: &DefinitionVersion) -> ApiResult<Option<String>> {
    let Some(def) = &d.definition else {
        return Ok(None);
    };
    let latest = crate::tables::latest(s.snapshots.storage(), &d.name).await?;
    Ok(latest
        .filter(|l| l.definition_hash.as_deref() == Some(def.run_fingerprint().as_str()))
        .map(|l| l.run_id))
}

/// `GET /api/segmentations/{name}/drafts`.
pub(super) async fn drafts(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    let mut out = Vec::new();
    for d in definitions::drafts(s.snapshots.storage(), &name).await? {
        let run = ready_run(&s, &d).await?;
        let latest = crate::tables::latest(s.snapshots.storage(), &d.name).await?;
        out.push(json!({
            "name": d.name,
            "status": status(&d),
            "version": d.version,
            "by": d.by,
            "at": d.at,
            "note": d.note,
            "definition": d.definition,
            "latest_run": latest.map(|l| l.run_id),
            "ready": run.is_some(),
            // Closed for a promotion the parent never took: promote or discard again.
            "promotion_unfinished": unfinished(&s, &name, &d).await?,
            "compare": format!("/api/segmentations/{name}/compare?draft={}", d.name),
        }));
    }
    Ok(Json(out))
}

/// The draft `draft` of `name` (`{name}.draft-{n}` or `draft-{n}`), current version.
async fn draft_of(s: &AppState, name: &str, draft: &str) -> ApiResult<DefinitionVersion> {
    let full = definitions::draft_full_name(name, draft);
    let d = current(s, &full).await?;
    if d.draft_of.as_deref() != Some(name) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("`{full}` is not a draft of `{name}`"),
        ));
    }
    Ok(d)
}

/// `POST /api/segmentations/{name}/drafts/{draft}/promote`.
pub(super) async fn promote(
    State(s): State<AppState>,
    Path((name, draft)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
    let b: AuthorOnly = parse(
        &body,
        "{\"by\": \"ana\", \"note\": \"agreed in the workshop\"}",
    )?;
    let (by, note) = author(&b.by, &b.note)?;
    let d = draft_of(&s, &name, &draft).await?;
    let storage = s.snapshots.storage();
    // The draft is closed first: a discard landing at the same time writes the same
    // version of the draft, so one of the two wins and the parent changes only after a
    // promotion did. A draft closed for a promotion whose parent a crash left unchanged
    // is finished here.
    let closed = if let Some(draft_def) = &d.definition {
        let run_id = ready_run(&s, &d).await?.ok_or_else(|| {
            conflict(format!(
                "draft `{}` has no run of its current definition yet; `spectra segment` computes it after the aggregator's next pass",
                d.name
            ))
        })?;
        live(&s, &name).await?;
        // What the parent will be, checked before the draft is closed (a draft stored
        // before a check was added could fail it; closed, it could not be promoted).
        let mut def = draft_def.clone();
        def.name = name.clone();
        refuse_problems(&def)?;
        match definitions::close_for_promotion(storage, &d, &run_id, &by, &note)
            .await
            .map_err(refused)?
        {
            Appended::Written(v) => *v,
            Appended::Conflict => {
                return Err(conflict(format!(
                    "another change to draft `{}` landed first; read it again",
                    d.name
                )))
            }
        }
    } else if unfinished(&s, &name, &d).await? {
        tracing::warn!(segmentation = %name, draft = %d.name,
            "finishing a promotion that stopped after closing the draft");
        d
    } else {
        return Err(conflict(format!("draft `{}` is {}", d.name, status(&d))));
    };
    // What stops a promotion here is the parent's state (retired, changing): a
    // conflict, which promoting again resolves.
    let promoted = definitions::finish_promotion(storage, &name, &closed, &by, &note)
        .await
        .map_err(|e| match e {
            spectra_core::Error::Config(problems) => conflict(format!(
                "{}; the draft is closed for the promotion: promote it again to finish, or discard it",
                problems.join("; ")
            )),
            e => e.into(),
        })?;
    s.changed.notify_one();
    let run_id = closed.promoted_from.as_ref().map(|p| p.run_id.as_str());
    tracing::warn!(segmentation = %name, draft = %closed.name, draft_run = ?run_id, by = %by,
        version = promoted.version, "draft promoted: the segmentation's next run takes its segments");
    Ok(Json(json!({"segmentation": promoted, "draft": closed})))
}

/// Whether draft `d` of `name` was closed for a promotion that did not reach `name`
/// (the process stopped between the two writes, or the parent refused it).
async fn unfinished(s: &AppState, name: &str, d: &DefinitionVersion) -> ApiResult<bool> {
    Ok(d.definition.is_none()
        && d.action == Action::Promoted
        && d.promoted_from.is_some()
        && definitions::promoted_from(s.snapshots.storage(), name, &d.name)
            .await?
            .is_none())
}

/// `POST /api/segmentations/{name}/drafts/{draft}/discard`.
pub(super) async fn discard(
    State(s): State<AppState>,
    Path((name, draft)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<DefinitionVersion>> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
    let b: AuthorOnly = parse(&body, "{\"by\": \"ana\", \"note\": \"too fine\"}")?;
    let (by, note) = author(&b.by, &b.note)?;
    let d = draft_of(&s, &name, &draft).await?;
    // A promotion that never reached the parent may be discarded instead of finished.
    if d.definition.is_none() && !unfinished(&s, &name, &d).await? {
        return Err(conflict(format!("draft `{}` is {}", d.name, status(&d))));
    }
    let v = d.next(&by, Source::Api, Action::Discarded, &note, None);
    Ok(Json(write(&s, v).await?))
}

/// `GET /api/segmentations/{name}/pins`.
pub(super) async fn pins(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let (cur, def) = live(&s, &name).await?;
    Ok(Json(json!({"version": cur.version, "pins": def.pins})))
}

/// `PUT /api/segmentations/{name}/pins/{outlet}`.
pub(super) async fn pin(
    State(s): State<AppState>,
    Path((name, outlet)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<DefinitionVersion>> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
    let b: PinBody = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "the body is not valid ({e}); send JSON like {{\"segment_id\": \"S3\", \"by\": \"ana\"}}"
        ))
    })?;
    let (by, note) = author(&b.by, &b.note)?;
    let (cur, mut def) = live(&s, &name).await?;
    // The segment must exist in the run people see now.
    if let Some(snap) = s.snapshots.get(&name).await? {
        if !snap.profiles.iter().any(|p| p.segment_id == b.segment_id) {
            return Err(bad(format!(
                "segmentation `{name}` has no segment `{}` in its latest run",
                b.segment_id
            )));
        }
    }
    if outlet.is_empty() || outlet.len() > 128 {
        return Err(bad("an outlet id is 1–128 characters".into()));
    }
    def.pins.insert(outlet, b.segment_id);
    let v = cur.next(&by, Source::Api, Action::Pinned, &note, Some(def));
    Ok(Json(write(&s, v).await?))
}

/// `DELETE /api/segmentations/{name}/pins/{outlet}`.
pub(super) async fn unpin(
    State(s): State<AppState>,
    Path((name, outlet)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<DefinitionVersion>> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
    let b: AuthorOnly = parse(&body, "{\"by\": \"ana\"}")?;
    let (by, note) = author(&b.by, &b.note)?;
    let (cur, mut def) = live(&s, &name).await?;
    if def.pins.remove(&outlet).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("outlet `{outlet}` is not pinned in `{name}`"),
        ));
    }
    let v = cur.next(&by, Source::Api, Action::Unpinned, &note, Some(def));
    Ok(Json(write(&s, v).await?))
}

/// A merge or split of the segments of `name`'s served run, as its next version.
async fn restructure(
    s: &AppState,
    name: &str,
    by: &str,
    note: &str,
    op: Operation,
) -> ApiResult<DefinitionVersion> {
    let (cur, mut def) = live(s, name).await?;
    let snap = super::snapshot(s, name).await?;
    let has = |id: &str| snap.profiles.iter().any(|p| p.segment_id == id);
    let (ids, k, action) = match &op {
        Operation::Merge { kept, retired } => {
            if kept == retired {
                return Err(bad("a segment cannot be merged into itself".into()));
            }
            (vec![kept, retired], snap.profiles.len() - 1, Action::Merged)
        }
        Operation::Split { segment_id } => {
            (vec![segment_id], snap.profiles.len() + 1, Action::Split)
        }
    };
    if let Some(missing) = ids.iter().find(|id| !has(id)) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "segmentation `{name}` has no segment `{missing}` in its run {}",
                snap.run.latest.run_id
            ),
        ));
    }
    if k < 1 {
        return Err(bad("the last segment cannot be merged away".into()));
    }
    def.k = KSpec::Fixed(k);
    let mut v = cur.next(by, Source::Api, action, note, Some(def));
    v.operation = Some(op);
    write(s, v).await
}

/// `POST /api/segmentations/{name}/segments/{id}/merge`.
pub(super) async fn merge(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<DefinitionVersion>> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
    let b: MergeBody = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "the body is not valid ({e}); send JSON like {{\"into\": \"S2\", \"by\": \"ana\"}}"
        ))
    })?;
    let (by, note) = author(&b.by, &b.note)?;
    let op = Operation::Merge {
        kept: b.into,
        retired: id,
    };
    Ok(Json(restructure(&s, &name, &by, &note, op).await?))
}

/// `POST /api/segmentations/{name}/segments/{id}/split`.
pub(super) async fn split(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<DefinitionVersion>> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
    let b: AuthorOnly = parse(&body, "{\"by\": \"ana\", \"note\": \"two kinds of shop\"}")?;
    let (by, note) = author(&b.by, &b.note)?;
    let op = Operation::Split { segment_id: id };
    Ok(Json(restructure(&s, &name, &by, &note, op).await?))
}
