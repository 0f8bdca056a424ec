//! The web console in headless Chromium: it loads, shows every segment with its
//! spectrum chart, and a tag set through the API appears after a reload; names and tags
//! full of markup show as text, under a Content-Security-Policy without inline script.
//! The store is the real services' output on a seeded feed (`spectra_tests::fixture`).
//! Screenshots are saved to `{target}/artifacts/console*.png`.

use serde_json::json;
use spectra_core::service::Context;
use spectra_publisher::PublishOptions;
use spectra_tests::fixture::{fixture, Stage, Store};
use spectra_tests::services::{artifacts, browser};
use tokio_util::sync::CancellationToken;

/// A publisher serving the console over a copy of the fixture after run 2. Returns the
/// store (kept alive), the service's token and the base URL.
async fn console(prefix: &str) -> (Store, CancellationToken, String) {
    let store = fixture().store(Stage::Run2);
    let cfg = store.config(&spectra_tests::fresh(prefix));
    let token = CancellationToken::new();
    let svc = spectra_publisher::start(cfg, Context::new(token.clone()), PublishOptions::default())
        .await
        .unwrap();
    let base = format!("http://{}", svc.addr().unwrap());
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
    // The movement view lists every move of the run with its evidence.
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
