//! The web console in headless Chromium: it loads, shows every segment with its
//! spectrum chart, and a tag set through the API appears after a reload; names and tags
//! full of markup show as text, under a Content-Security-Policy without inline script.
//! The store is the real services' output on a seeded feed (`spectra_tests::fixture`).
//! Screenshots are saved to `{target}/artifacts/console*.png`.

use serde_json::json;
use spectra_core::tables::rolling;
use spectra_tests::fixture::{fixture, Store};
use spectra_tests::services::{artifacts, browser, count_colours, publisher_on_run2};
use tokio_util::sync::CancellationToken;

/// A publisher serving the console over a copy of the fixture after run 2 (editing
/// with the fixture's token). Returns the store (kept alive), the service's token
/// and the base URL.
async fn console(prefix: &str) -> (Store, CancellationToken, String) {
    let (store, _, base, token) = publisher_on_run2(prefix, "s3cret").await;
    (store, token, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_shows_segments_with_charts_and_an_edited_tag_after_reload() {
    let (_store, token, base) = console("ui").await;
    let fx = fixture();
    let run2 = &fx.run2;
    let segments = run2.segments().len();
    let coffee = fx.segment_of_taste(run2, 0);
    let other = fx.segment_of_taste(run2, 1);

    let dom = tokio::task::spawn_blocking({
        let base = base.clone();
        move || browser(&["--dump-dom"], &format!("{base}/#/segments"))
    })
    .await
    .unwrap();
    assert_eq!(
        dom.matches("class=\"card segment-card\"").count(),
        segments,
        "{dom}"
    );
    assert_eq!(
        dom.matches("<svg class=\"dna\"").count(),
        segments,
        "a spectrum strip per segment"
    );
    let card = dom
        .split(&format!("data-segment=\"{coffee}\""))
        .nth(1)
        .expect("the coffee segment's card");
    let card = card.split("</article>").next().unwrap();
    let name = run2.proposed_name(&coffee);
    let size = format!("<b>{}</b><span>outlets", run2.members(&coffee).len());
    assert!(
        card.contains(&name) && card.contains(&size),
        "{name}, {size}: {card}"
    );
    assert!(!dom.contains("#shelf-champion"));

    let r = reqwest::Client::new()
        .put(format!("{base}/api/segmentations/mix/segments/{other}"))
        .bearer_auth("s3cret")
        .json(&json!({"tags": ["#shelf-champion"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let dir = artifacts();
    let shot = dir.join("console.png");
    let _ = std::fs::remove_file(&shot);
    let (dom, detail, movement) = tokio::task::spawn_blocking({
        let (base, shot, dir, coffee) = (base.clone(), shot.clone(), dir.clone(), coffee.clone());
        move || {
            let dom = browser(&["--dump-dom"], &format!("{base}/#/segments"));
            browser(
                &[&format!("--screenshot={}", shot.display())],
                &format!("{base}/#/segments"),
            );
            browser(
                &[&format!(
                    "--screenshot={}",
                    dir.join("console-segment.png").display()
                )],
                &format!("{base}/#/segment/{coffee}"),
            );
            let detail = browser(&["--dump-dom"], &format!("{base}/#/segment/{coffee}"));
            let movement = browser(&["--dump-dom"], &format!("{base}/#/movement"));
            (dom, detail, movement)
        }
    })
    .await
    .unwrap();
    // The movement view lists the moves of the run (up to 500) with their evidence.
    let moved = run2.with_change("moved");
    assert!(!moved.is_empty());
    assert!(movement.contains("Why outlets moved"), "{movement}");
    assert_eq!(
        movement.matches("<tr class=\"move\">").count(),
        moved.len().min(500),
        "{movement}"
    );
    for o in moved.iter().take(500) {
        assert!(
            movement.contains(&format!("href=\"#/outlet/{o}\">{o}</a>")),
            "{o} missing from the movement view"
        );
    }
    assert!(
        movement.contains("<td>changed</td>") && movement.contains(" → "),
        "the detector's moves show their reason and drivers: {movement}"
    );
    // Every segment's own drift is listed apart from the moves, as model.json's
    // `movement.segments` has it, the drifted ones flagged.
    let drift = run2.model["movement"]["segments"]
        .as_array()
        .expect("the segments' drift in model.json");
    assert_eq!(
        movement.matches("<tr class=\"drift").count(),
        drift.len(),
        "{movement}"
    );
    let two = |v: &serde_json::Value| format!("<td class=\"num\">{:.2}</td>", v.as_f64().unwrap());
    let mut drifted = 0;
    for s in drift {
        let id = s["segment_id"].as_str().unwrap();
        let flagged = s["drifted"] == true;
        drifted += usize::from(flagged);
        let class = if flagged { "drift drifted" } else { "drift" };
        let row = movement
            .split(&format!("<tr class=\"{class}\" data-segment=\"{id}\">"))
            .nth(1)
            .unwrap_or_else(|| panic!("{id}'s drift row ({class}): {movement}"))
            .split("</tr>")
            .next()
            .unwrap();
        for field in ["drift", "line_drift", "own_drift", "line_own_drift"] {
            assert!(row.contains(&two(&s[field])), "{field} of {s}: {row}");
        }
        assert_eq!(row.contains("<b>drifted</b>"), flagged, "{s}: {row}");
        assert!(row.contains(" → "), "{id}'s drivers: {row}");
    }
    println!("{drifted} of {} segments drifted", drift.len());
    assert!(
        movement.contains(&format!("{drifted} of {} segments drifted", drift.len()))
            || (drifted == 0 && movement.contains("None: each segment's members buy now")),
        "{movement}"
    );
    let card = dom
        .split(&format!("data-segment=\"{other}\""))
        .nth(1)
        .expect("the tagged segment's card");
    let card = card.split("</article>").next().unwrap();
    assert!(
        card.contains("<span class=\"tag\">#shelf-champion</span>"),
        "the tag shows on {other}'s card after reload: {card}"
    );
    assert!(
        detail.contains("Category fit")
            && detail.contains("Who they are")
            && detail.contains("Largest outlets"),
        "{detail}"
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        png.len() > 20_000,
        "a real page, not a blank one ({} bytes)",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
    token.cancel();
}

/// The serialized DOM without the values of `value="…"` attributes (an input holding
/// markup as text is fine, whatever the serializer does with its `<`).
fn without_attribute_values(dom: &str) -> String {
    let mut out = String::with_capacity(dom.len());
    let mut rest = dom;
    while let Some(i) = rest.find("value=\"") {
        out.push_str(&rest[..i + 7]);
        rest = &rest[i + 7..];
        rest = &rest[rest.find('"').map_or(rest.len(), |j| j)..];
    }
    out.push_str(rest);
    out
}

/// A segment name, description and tags full of markup and formulas, set through the
/// real `PUT` API, show as literal text on the segments page and the segment page: no
/// element is created from them. The page is served with a Content-Security-Policy that
/// allows no inline script, and still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_names_and_tags_show_as_text_never_as_markup() {
    let (_store, token, base) = console("uix").await;
    let fx = fixture();
    let segments = fx.run2.segments().len();
    let target = fx.segment_of_taste(&fx.run2, 2);

    // The page: security headers, and no inline script for the policy to forbid.
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"));
    assert!(!csp
        .split(';')
        .any(|d| d.trim().starts_with("script-src") && d.contains("unsafe-inline")));
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=\"/console/").count(),
        "every script is a served file: {html}"
    );

    let name = "<img src=x onerror=alert(1)>";
    let description = "<b>bold</b><script>alert(2)</script>";
    let tags = [
        "=HYPERLINK(\"http://x\";\"y\")",
        "<img/src=y/onerror=alert(3)>",
    ];
    let r = reqwest::Client::new()
        .put(format!("{base}/api/segmentations/mix/segments/{target}"))
        .bearer_auth("s3cret")
        .json(&json!({"name": name, "description": description, "tags": tags}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let dir = artifacts();
    let shot = dir.join("console-hostile.png");
    let _ = std::fs::remove_file(&shot);
    let (list, detail) = tokio::task::spawn_blocking({
        let (base, shot, target) = (base.clone(), shot.clone(), target.clone());
        move || {
            let list = browser(&["--dump-dom"], &format!("{base}/#/segments"));
            browser(
                &[&format!("--screenshot={}", shot.display())],
                &format!("{base}/#/segment/{target}"),
            );
            let detail = browser(&["--dump-dom"], &format!("{base}/#/segment/{target}"));
            (list, detail)
        }
    })
    .await
    .unwrap();

    // The console ran (under the policy) and rendered every segment.
    assert_eq!(
        list.matches("class=\"card segment-card\"").count(),
        segments,
        "{list}"
    );
    let card = list
        .split(&format!("data-segment=\"{target}\""))
        .nth(1)
        .expect("the renamed segment's card");
    let card = card.split("</article>").next().unwrap();
    assert!(
        card.contains("&lt;img src=x onerror=alert(1)&gt;</a>"),
        "the name as text on the card: {card}"
    );
    assert!(
        card.contains("<span class=\"tag\">=HYPERLINK(\"http://x\";\"y\")</span>"),
        "{card}"
    );
    assert!(
        card.contains("<span class=\"tag\">&lt;img/src=y/onerror=alert(3)&gt;</span>"),
        "{card}"
    );
    assert!(
        card.contains("&lt;b&gt;bold&lt;/b&gt;&lt;script&gt;alert(2)&lt;/script&gt;"),
        "the description as text: {card}"
    );
    assert!(
        detail.contains("Category fit") && detail.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "the segment page shows the name as text: {detail}"
    );
    for (page, dom) in [("segments", &list), ("segment", &detail)] {
        let dom = without_attribute_values(dom);
        assert!(
            !dom.contains("<img") && !dom.contains("<b>bold") && !dom.contains("<script>alert"),
            "the {page} page made elements from the data: {dom}"
        );
    }
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    eprintln!("screenshot: {}", shot.display());
    token.cancel();
}

/// The outlet 360 page in Chromium: every recommendation the API serves for the
/// outlet is listed with its quantity and its reason, and a list the run's data cannot
/// fill says why (the run's `model.json` notes) instead of "Nothing now".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outlet_page_lists_each_recommendation_with_its_reason() {
    let (_store, token, base) = console("outlet").await;
    let fx = fixture();
    let c = reqwest::Client::new();
    // The outlet with the most recommendations among the first fifty.
    let mut best: Option<(usize, String, serde_json::Value)> = None;
    let mut with_sku_gaps = 0;
    for id in fx.run2.assignments.keys().take(50) {
        let o: serde_json::Value = c
            .get(format!("{base}/api/outlets/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let view = o["segmentations"][0].clone();
        with_sku_gaps += usize::from(!view["sku_gaps"].as_array().unwrap().is_empty());
        let n: usize = spectra_core::tables::runs::REC_LISTS
            .iter()
            .map(|l| view["recommendations"][l].as_array().map_or(0, Vec::len))
            .sum();
        if best.as_ref().is_none_or(|b| n > b.0) {
            best = Some((n, id.clone(), view));
        }
    }
    let (n, id, view) = best.unwrap();
    assert!(n > 0, "some outlet has recommendations");
    let notes = view["recommendation_notes"]
        .as_object()
        .expect("the run's notes");
    let model_notes = fx.run2.model["recommendations"]["notes"]
        .as_object()
        .unwrap();
    assert_eq!(notes, model_notes, "the 360 view serves the run's notes");

    let dir = artifacts();
    let shot = dir.join("console-outlet.png");
    let _ = std::fs::remove_file(&shot);
    let dom = tokio::task::spawn_blocking({
        let (base, id, shot) = (base.clone(), id.clone(), shot.clone());
        move || {
            browser(
                &[&format!("--screenshot={}", shot.display())],
                &format!("{base}/#/outlet/{id}"),
            );
            browser(&["--dump-dom"], &format!("{base}/#/outlet/{id}"))
        }
    })
    .await
    .unwrap();
    for list in spectra_core::tables::runs::REC_LISTS {
        let items = view["recommendations"][list].as_array().unwrap();
        for item in items {
            let (sku, reason) = (
                item["sku_id"].as_str().unwrap(),
                item["reason"].as_str().unwrap_or(""),
            );
            assert!(reason.len() > 30, "{list} {sku} has a reason: {item}");
            let name = item["sku_name"].as_str().expect("a name from master data");
            assert!(
                dom.contains(&format!(
                    "data-sku=\"{sku}\">{name} <span class=\"muted\">{sku}</span>"
                )),
                "{list} {sku} shows as {name}"
            );
            assert!(
                dom.contains(&format!("data-sku=\"{sku}\"")) && dom.contains(reason),
                "{list} {sku} with its reason `{reason}` on the page"
            );
        }
        if items.is_empty() {
            let shown = notes
                .get(list)
                .and_then(|n| n.as_str())
                .unwrap_or("Nothing now.");
            assert!(
                dom.contains(&format!("data-note=\"{list}\">{shown}</p>")),
                "empty {list} says `{shown}`"
            );
        }
    }
    // The SKUs with the most to win, in the view's order, by name.
    assert!(
        with_sku_gaps > 10,
        "{with_sku_gaps} of 50 outlets have SKU gaps"
    );
    let gaps = view["sku_gaps"].as_array().unwrap();
    let shown: Vec<&str> = dom
        .split("<tr class=\"sku-gap\" data-sku=\"")
        .skip(1)
        .map(|r| r.split('"').next().unwrap())
        .collect();
    let served: Vec<&str> = gaps.iter().map(|g| g["sku_id"].as_str().unwrap()).collect();
    assert_eq!(shown, served, "the SKU gaps table");
    for g in gaps {
        let (sku, name) = (
            g["sku_id"].as_str().unwrap(),
            g["sku_name"].as_str().unwrap(),
        );
        assert!(
            dom.contains(&format!(
                "<tr class=\"sku-gap\" data-sku=\"{sku}\"><td>{name} <span class=\"muted\">{sku}</span>"
            )),
            "{sku} as {name}"
        );
    }
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(png.len() > 20_000, "a real page ({} bytes)", png.len());
    // The weekly history and the outlet's spectrum bars are drawn in indigo (#4f46e5).
    let [indigo] = count_colours(&shot, [(79, 70, 229)]);
    assert!(
        indigo > 2_000,
        "the charts are drawn: {indigo} indigo pixels"
    );
    token.cancel();
}

/// `1234567` as the console's `Intl.NumberFormat` (en-US in headless Chromium) shows
/// it: `1,234,567`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Trends over runs: the API serves each segment's outlets, value and spectrum per run
/// from the runs' own profiles; the segment page draws them; the pipeline page shows
/// every run with its silhouette.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segment_trends_and_the_pipeline_page_show_every_run() {
    let (store, token, base) = console("trend").await;
    let fx = fixture();
    let (run1, run2) = (&fx.run1, &fx.run2);
    let c = reqwest::Client::new();
    let t: serde_json::Value = c
        .get(format!("{base}/api/segmentations/mix/trends"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runs: Vec<&str> = t["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(runs, [run1.run_id.as_str(), run2.run_id.as_str()], "{t}");
    let segments = t["segments"].as_array().unwrap();
    let ids: std::collections::BTreeSet<String> = segments
        .iter()
        .map(|s| s["segment_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        run1.segments().union(&run2.segments()).cloned().collect()
    );
    for s in segments {
        let id = s["segment_id"].as_str().unwrap();
        for (i, run) in [run1, run2].into_iter().enumerate() {
            let members = run.members(id).len();
            let expected = if members == 0 {
                serde_json::Value::Null
            } else {
                json!(members)
            };
            assert_eq!(s["outlets"][i], expected, "{id} in {}", run.run_id);
        }
        let profile = run2.profiles.iter().find(|p| p["segment_id"] == id);
        for f in s["spectrum"].as_array().unwrap() {
            let share = f["share"][1].as_f64();
            let expected = profile.map(|p| {
                p["spectrum"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["feature"] == f["feature"])
                    .map_or(0.0, |x| x["share"].as_f64().unwrap())
            });
            assert_eq!(share, expected, "{id} {}", f["feature"]);
        }
    }
    let r = c
        .get(format!("{base}/api/segmentations/nope/trends"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let coffee = fx.segment_of_taste(run2, 0);
    let (n1, n2) = (run1.members(&coffee).len(), run2.members(&coffee).len());
    assert!(n1 > 0 && n2 > 0, "the coffee segment is in both runs");
    // A re-roll under way, marked as the aggregator marks it: the pipeline page says so.
    let storage = spectra_core::Storage::from_url(&store.url).unwrap();
    let seen = rolling::load_marked(&storage).await.unwrap();
    let pass = rolling::begin(&storage, &seen, 4).await.unwrap().unwrap();
    let dir = artifacts();
    let (detail, pipeline, by_potential) = tokio::task::spawn_blocking({
        let (base, coffee, dir) = (base.clone(), coffee.clone(), dir.clone());
        move || {
            browser(
                &[&format!(
                    "--screenshot={}",
                    dir.join("console-pipeline.png").display()
                )],
                &format!("{base}/#/pipeline"),
            );
            (
                browser(&["--dump-dom"], &format!("{base}/#/segment/{coffee}")),
                browser(&["--dump-dom"], &format!("{base}/#/pipeline")),
                browser(
                    &["--dump-dom"],
                    &format!("{base}/#/segment/{coffee}/potential"),
                ),
            )
        }
    })
    .await
    .unwrap();
    // Sorted by potential: tier A first, the tiers the run gave, potential falling
    // within a tier.
    assert!(
        by_potential.contains("data-sort=\"tier\""),
        "{by_potential}"
    );
    let tiers: Vec<&str> = by_potential
        .split("<td class=\"tier\">")
        .skip(1)
        .map(|t| t.split('<').next().unwrap())
        .collect();
    let mut expected: Vec<(&str, f64, &str)> = run2
        .assignments
        .iter()
        .filter(|(_, a)| a.segment_id == coffee)
        .map(|(o, a)| (a.tier.as_str(), -a.potential, o.as_str()))
        .collect();
    expected.sort_by(|a, b| a.0.cmp(b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(b.2)));
    let want: Vec<&str> = expected.iter().take(25).map(|e| e.0).collect();
    assert_eq!(tiers, want);
    assert_eq!(tiers.first(), Some(&"A"));
    let card = detail
        .split(&format!("data-trend=\"{coffee}\""))
        .nth(1)
        .expect("the trend card");
    assert!(
        card.contains("data-series=\"outlets\"")
            && card.contains(&format!(
                "data-range=\"outlets\">{} → {}</span>",
                thousands(n1),
                thousands(n2)
            )),
        "{n1} → {n2}: {card}"
    );
    let points = card
        .split("<polyline")
        .nth(1)
        .and_then(|p| p.split("points=\"").nth(1))
        .and_then(|p| p.split('"').next())
        .unwrap();
    assert_eq!(
        points.split_whitespace().count(),
        2,
        "a point per run: {points}"
    );
    // The context card: the segment's brand mix, each row as the context route serves
    // it (share of the segment's spend, index against all outlets).
    let ctx: serde_json::Value = c
        .get(format!(
            "{base}/api/segmentations/mix/segments/{coffee}/context"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let brands = spectra_tests::served::context_values(&ctx, "product", "brand");
    let card = detail
        .split("data-dimension=\"product.brand\"")
        .nth(1)
        .expect("the context card shows the brand mix");
    let card = card.split("</table>").next().unwrap();
    assert_eq!(
        card.matches("class=\"context-row\"").count(),
        brands.len().min(12)
    );
    for b in brands.iter().take(12) {
        let row = card
            .split(&format!("data-value=\"{}\"", b["value"].as_str().unwrap()))
            .nth(1)
            .unwrap_or_else(|| panic!("{b} in {card}"));
        let row = row.split("</tr>").next().unwrap();
        // As the page formats them: a percentage to one decimal, the index whole.
        let share = (1000.0 * b["share"].as_f64().unwrap()).round() / 10.0;
        let index = b["index"].as_f64().unwrap().round();
        assert!(
            row.contains(&format!(">{share}%<"))
                && (index >= 1000.0 || row.contains(&format!(">{index}<"))),
            "{b}: {row}"
        );
    }
    assert!(
        detail.contains("<optgroup label=\"distributor\">"),
        "the filters"
    );

    assert!(rolling::end(&storage, &pass).await.unwrap());
    assert!(
        pipeline.contains("days re-rolled for moved lines since"),
        "{pipeline}"
    );
    // The pipeline page: both runs, with the silhouette each run's model reports.
    assert!(
        pipeline.contains("<th class=\"num\">silhouette</th>"),
        "{pipeline}"
    );
    for run in [run1, run2] {
        let silhouette = run.model["quality"]["silhouette"].as_f64().unwrap();
        let row = pipeline
            .split(&format!("<td>{}</td>", run.run_id))
            .nth(1)
            .unwrap_or_else(|| panic!("{} on the pipeline page", run.run_id));
        let row = row.split("</tr>").next().unwrap();
        assert!(
            row.contains(&format!("<td class=\"num\">{silhouette:.3}</td>")),
            "{}: silhouette {silhouette:.3} in {row}",
            run.run_id
        );
    }
    let png = std::fs::read(dir.join("console-pipeline.png")).unwrap();
    assert!(png.len() > 20_000, "a real page ({} bytes)", png.len());
    token.cancel();
}

/// Movement between any two runs: the comparison of run 1 and run 2 lists exactly the
/// outlets whose segment id changed (ids are stable between runs), each move the
/// detector made with why; the movement page offers the two runs and the comparison
/// page shows the moves with their reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_two_runs_compare_with_the_outlets_that_moved_and_why() {
    let (_store, token, base) = console("runs").await;
    let fx = fixture();
    let (run1, run2) = (&fx.run1, &fx.run2);
    let c = reqwest::Client::new();
    let url = format!(
        "{base}/api/segmentations/mix/compare?a={}&b={}",
        run1.run_id, run2.run_id
    );
    let v: serde_json::Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    let moved: std::collections::BTreeSet<&str> = run2
        .assignments
        .iter()
        .filter(|(o, a)| {
            run1.assignments
                .get(*o)
                .is_some_and(|b| b.segment_id != a.segment_id)
        })
        .map(|(o, _)| o.as_str())
        .collect();
    assert!(!moved.is_empty());
    assert_eq!(v["movers"]["outlets"], moved.len(), "{}", v["movers"]);
    let listed = v["movers"]["listed"].as_array().unwrap();
    assert_eq!(listed.len(), moved.len().min(200));
    let mut explained = 0;
    for m in listed {
        let o = m["outlet_id"].as_str().unwrap();
        assert!(moved.contains(o), "{o} did not move");
        assert_eq!(m["from"], run1.assignments[o].segment_id.as_str());
        assert_eq!(m["to"], run2.assignments[o].segment_id.as_str());
        // Run 2 follows run 1: every one of its moves comes with the run's reason.
        assert_eq!(run2.assignments[o].change, "moved", "{o}");
        assert!(m["reason"].is_string(), "{m}");
        explained += usize::from(m["reason"] == "changed");
    }
    assert!(explained > 0, "the detector's moves carry their evidence");

    // The latest run's moves with their evidence, a page at a time in outlet id order.
    let get = |query: &str| {
        let request = c
            .get(format!("{base}/api/segmentations/mix/movements{query}"))
            .send();
        async move {
            let r = request.await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let all = get("").await;
    assert_eq!(all["run_id"], run2.run_id.as_str());
    assert_eq!(all["moved"], moved.len(), "{}", all["moved"]);
    let ids: Vec<&str> = all["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["outlet_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, moved.iter().copied().collect::<Vec<_>>());
    assert!(moved.len() >= 3, "a page in the middle needs three moves");
    let second = get("?limit=1&offset=1").await;
    assert_eq!(second["movements"].as_array().unwrap().len(), 1);
    assert_eq!(second["movements"][0], all["movements"][1]);
    assert_eq!(
        (&second["offset"], &second["next_offset"]),
        (&json!(1), &json!(2))
    );
    let last = get(&format!("?offset={}", moved.len() - 1)).await;
    assert_eq!(last["movements"].as_array().unwrap().len(), 1);
    assert!(last["next_offset"].is_null(), "{}", last["next_offset"]);
    let past = get(&format!("?offset={}", moved.len() + 5)).await;
    assert!(past["movements"].as_array().unwrap().is_empty());
    assert_eq!(get("?limit=1000000").await["limit"], 10_000);
    assert_eq!(
        get("?limit=0").await["limit"],
        1,
        "a page holds a move at least"
    );
    let same = get(&format!(
        "?offset=1&limit=1&run_id={}",
        run2.run_id.replace('/', "%2F")
    ))
    .await;
    assert_eq!(same["movements"], second["movements"]);
    let r = c
        .get(format!(
            "{base}/api/segmentations/mix/movements?offset=1&run_id={}",
            run1.run_id.replace('/', "%2F")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        409,
        "a page of another run than the one asked for"
    );

    // The outlet 360 view carries the move's evidence, the same row; an outlet that
    // did not move, none.
    let first = &all["movements"][0];
    let mover = first["outlet_id"].as_str().unwrap().to_owned();
    let outlet = |id: &str| {
        let request = c.get(format!("{base}/api/outlets/{id}")).send();
        async move {
            let o: serde_json::Value = request.await.unwrap().json().await.unwrap();
            o["segmentations"][0]["movement"].clone()
        }
    };
    assert_eq!(&outlet(&mover).await, first);
    let stayed = run2
        .assignments
        .keys()
        .find(|o| !moved.contains(o.as_str()))
        .unwrap();
    assert!(outlet(stayed).await.is_null());

    let (movement, compare, why) = tokio::task::spawn_blocking({
        let (base, a, b) = (base.clone(), run1.run_id.clone(), run2.run_id.clone());
        let mover = mover.clone();
        move || {
            let arg = format!("{a}..{b}").replace('/', "%2F");
            (
                browser(&["--dump-dom"], &format!("{base}/#/movement")),
                browser(&["--dump-dom"], &format!("{base}/#/compare/{arg}")),
                browser(&["--dump-dom"], &format!("{base}/#/outlet/{mover}")),
            )
        }
    })
    .await
    .unwrap();
    spectra_tests::served::assert_the_outlet_page_says_why(&why, first);
    let form = movement
        .split("id=\"runs-form\"")
        .nth(1)
        .expect("the two-run form");
    assert!(
        form.contains(&format!("<option value=\"{}\"", run1.run_id))
            && form.contains(&format!("<option value=\"{}\" selected", run2.run_id)),
        "{form}"
    );
    assert_eq!(
        compare.matches("<tr class=\"mover\">").count(),
        moved.len().min(50),
        "{compare}"
    );
    assert!(compare.contains("<td>changed"), "{compare}");
    token.cancel();
}
