//! What the publisher's insight routes serve, figure by figure, against a running
//! service on the runs the real services made of a seeded feed
//! (`spectra_tests::fixture`): a segment's context (spend, buyers and outlets by brand,
//! region and distributor) and an outlet's view (the SKUs with the most to win), each
//! recomputed from the lines fed in.

use serde_json::{json, Value};
use spectra_tests::fixture::{fixture, SEGMENTATION};
use spectra_tests::served;
use spectra_tests::services::{get_json, publisher_on_run2};

/// The segment-context route against the fed lines: the fixture's lines in run 2's
/// window, with the catalogue's brands and the outlets' regions and main distributors
/// (per day the distributor with the largest value; per window the one whose days were
/// worth the most), give every spend, buyer count and outlet count the API serves,
/// unfiltered and under a region and a distributor filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_segments_context_is_the_fed_lines_by_brand_region_and_distributor() {
    use std::collections::{BTreeMap, BTreeSet};
    let (_store, _cfg, base, token) = publisher_on_run2("insight", "s3cret").await;
    let fx = fixture();
    let run2 = &fx.run2;
    let seg = fx.segment_of_taste(run2, 0);
    let (from, to) = fx.window(run2);
    let lines: Vec<_> = fx
        .lines
        .iter()
        .filter(|l| from <= l.date && l.date <= to && run2.assignments.contains_key(&l.outlet))
        .collect();
    let brand: BTreeMap<&str, &str> = fx
        .skus
        .iter()
        .map(|s| (s.id.as_str(), s.brand.as_str()))
        .collect();
    let region: BTreeMap<&str, &str> = fx
        .outlets
        .iter()
        .map(|o| (o.id.as_str(), o.region.as_str()))
        .collect();
    // The main distributor: the day's by value, then the window's by the days' value.
    let mut days: BTreeMap<(&str, chrono::NaiveDate), BTreeMap<&str, f64>> = BTreeMap::new();
    for l in &lines {
        *days
            .entry((l.outlet.as_str(), l.date))
            .or_default()
            .entry(l.distributor.as_str())
            .or_default() += l.value;
    }
    let mut by_main: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for ((outlet, _), per) in &days {
        let main = per
            .iter()
            .fold(None::<(&str, f64)>, |best, (d, v)| match best {
                Some((_, b)) if b >= *v => best,
                _ => Some((d, *v)),
            })
            .unwrap()
            .0;
        *by_main.entry(outlet).or_default().entry(main).or_default() += per.values().sum::<f64>();
    }
    let main_of: BTreeMap<&str, &str> = by_main
        .iter()
        .map(|(o, per)| {
            let best = per
                .iter()
                .fold(None::<(&str, f64)>, |best, (d, v)| match best {
                    Some((_, b)) if b >= *v => best,
                    _ => Some((d, *v)),
                })
                .unwrap();
            (*o, best.0)
        })
        .collect();
    let members: BTreeSet<&str> = run2.members(&seg).into_iter().collect();
    let c = reqwest::Client::new();
    let url =
        |q: &str| format!("{base}/api/segmentations/{SEGMENTATION}/segments/{seg}/context{q}");

    // Expected brand spend and buyers of the outlets `keep` accepts.
    let brands = |keep: &dyn Fn(&str) -> bool| -> BTreeMap<&str, (f64, BTreeSet<&str>)> {
        let mut m: BTreeMap<&str, (f64, BTreeSet<&str>)> = BTreeMap::new();
        for l in lines.iter().filter(|l| keep(&l.outlet)) {
            let e = m.entry(brand[l.sku.as_str()]).or_default();
            e.0 += l.value;
            e.1.insert(l.outlet.as_str());
        }
        m
    };
    let check = |v: &Value, keep: &dyn Fn(&str) -> bool, what: &str| {
        let in_seg = |o: &str| members.contains(o) && keep(o);
        let outlets = run2.assignments.keys().filter(|o| in_seg(o)).count();
        let all = run2.assignments.keys().filter(|o| keep(o)).count();
        assert_eq!(v["outlets"], json!(outlets), "{what}: {v}");
        assert_eq!(v["all_outlets"], json!(all), "{what}");
        let served = served::context_values(v, "product", "brand");
        let (mine, everyone) = (brands(&in_seg), brands(keep));
        let total: f64 = mine.values().map(|x| x.0).sum();
        let total_all: f64 = everyone.values().map(|x| x.0).sum();
        assert_eq!(served.len(), everyone.len(), "{what}: {served:?}");
        for b in &served {
            let name = b["value"].as_str().unwrap();
            let (spend, buyers) = mine.get(name).cloned().unwrap_or_default();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
            assert!(
                close(b["spend"].as_f64().unwrap(), spend),
                "{what} {name}: {b} vs {spend}"
            );
            assert_eq!(b["outlets"], json!(buyers.len()), "{what} {name}");
            assert!(
                close(b["share"].as_f64().unwrap(), spend / total),
                "{what} {name}"
            );
            let avg = everyone[name].0 / total_all;
            assert!(close(b["average"].as_f64().unwrap(), avg), "{what} {name}");
            let idx = (1000.0 * (spend / total) / avg).round() / 10.0;
            assert!(close(b["index"].as_f64().unwrap(), idx), "{what} {name}");
            assert!(
                close(
                    b["penetration"].as_f64().unwrap(),
                    buyers.len() as f64 / outlets as f64
                ),
                "{what} {name}"
            );
        }
    };

    let (s, all) = get_json(&c, &url("")).await;
    assert_eq!(s, 200, "{all}");
    check(&all, &|_| true, "all outlets");
    // Every outlet field counts each of the segment's outlets once; `staff`, a number
    // with eleven values, comes in at most five bins.
    let field = |v: &Value, name: &str| served::context_values(v, "outlet", name);
    for name in [
        "region",
        "channel",
        "distributor",
        "attributes.size",
        "attributes.staff",
    ] {
        let counted: u64 = field(&all, name)
            .iter()
            .map(|x| x["outlets"].as_u64().unwrap())
            .sum();
        assert_eq!(counted as usize, members.len(), "{name}");
    }
    let staff = field(&all, "attributes.staff");
    assert!(
        (2..=5).contains(&staff.len())
            && staff
                .iter()
                .any(|b| b["value"].as_str().unwrap().contains(" – ")),
        "{staff:?}"
    );
    for d in field(&all, "distributor") {
        let id = d["value"].as_str().unwrap();
        let n = members
            .iter()
            .filter(|o| main_of.get(*o) == Some(&id))
            .count();
        assert_eq!(d["outlets"], json!(n), "distributor {id}");
    }
    // SKU level values carry the master's name.
    let skus = served::context_values(&all, "product", "sku");
    assert!(!skus.is_empty());
    for k in &skus {
        if k["value"] != "(other)" {
            assert_eq!(k["name"], fx.sku_name(&k["value"]), "{k}");
        }
    }
    let filters = &all["filters"];
    let regions: BTreeSet<&str> = run2
        .assignments
        .keys()
        .map(|o| region[o.as_str()])
        .collect();
    assert_eq!(
        filters["region"],
        json!(regions),
        "the regions, in byte order"
    );
    assert_eq!(filters["distributor"], json!(["D01", "D02", "D03"]));

    // Under a region, and under a distributor.
    let (s, v) = get_json(&c, &url("?region=Mazowsze")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["filter"], json!({"field": "region", "value": "Mazowsze"}));
    check(&v, &|o| region[o] == "Mazowsze", "region=Mazowsze");
    let (s, v) = get_json(&c, &url("?distributor=D02")).await;
    assert_eq!(s, 200, "{v}");
    check(&v, &|o| main_of.get(o) == Some(&"D02"), "distributor=D02");

    // Bad input.
    assert_eq!(
        get_json(&c, &url("?region=Mazowsze&channel=modern"))
            .await
            .0,
        400
    );
    assert_eq!(get_json(&c, &url("?size=M")).await.0, 400);
    let (s, v) = get_json(&c, &url("?region=Atlantis")).await;
    assert_eq!(s, 404);
    assert!(v["error"].as_str().unwrap().contains("Mazowsze"), "{v}");
    let (s, _) = get_json(
        &c,
        &format!("{base}/api/segmentations/{SEGMENTATION}/segments/S404/context"),
    )
    .await;
    assert_eq!(s, 404);
    token.cancel();
}

/// The 360 view's per-SKU gaps against the fed lines: for outlets of every segment of
/// run 2, the segment's SKU shares of spend (each outlet's window net value per SKU,
/// its positive part), the median member value and the outlet's own spend give the
/// SKUs it has the most to win on, in order, with their potential and penetration.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_outlet_view_lists_the_skus_with_the_most_to_win_as_the_fed_lines_give_them() {
    use std::collections::{BTreeMap, BTreeSet};
    let (_store, _cfg, base, token) = publisher_on_run2("insight", "s3cret").await;
    let fx = fixture();
    let run2 = &fx.run2;
    let (from, to) = fx.window(run2);
    // outlet → SKU → net value in the window.
    let mut spend: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for l in fx.lines.iter().filter(|l| from <= l.date && l.date <= to) {
        *spend
            .entry(l.outlet.as_str())
            .or_default()
            .entry(l.sku.as_str())
            .or_default() += l.value;
    }
    let c = reqwest::Client::new();
    let mut checked = 0;
    let mut listed = 0;
    for seg in run2.segments() {
        let members = run2.members(&seg);
        let mut seg_spend: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for m in &members {
            for (k, v) in spend.get(m).into_iter().flatten() {
                let e = seg_spend.entry(k).or_default();
                e.0 += v.max(0.0);
                e.1 += 1;
            }
        }
        let total: f64 = seg_spend.values().map(|e| e.0).sum();
        let mut top: Vec<(&str, f64, f64)> = seg_spend
            .iter()
            .filter(|(_, e)| e.0 > 0.0)
            .map(|(k, e)| (*k, e.0 / total, e.1 as f64 / members.len() as f64))
            .collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        top.truncate(50);
        let typical = served::median(
            members
                .iter()
                .map(|m| run2.assignments[*m].value.max(0.0))
                .collect(),
        );
        let n = members.len();
        // The smallest and the largest members: one below the median, one above.
        let mut by_value: Vec<&str> = members.clone();
        by_value.sort_by(|a, b| {
            run2.assignments[*a]
                .value
                .total_cmp(&run2.assignments[*b].value)
        });
        for outlet in [by_value[0], by_value[n - 1]]
            .into_iter()
            .collect::<BTreeSet<_>>()
        {
            let target = run2.assignments[outlet].value.max(0.0).max(typical);
            let own = spend.get(outlet).cloned().unwrap_or_default();
            let mut want: Vec<(&str, f64, f64)> = top
                .iter()
                .map(|(k, share, pen)| {
                    let p = share * target - own.get(k).copied().unwrap_or(0.0).max(0.0);
                    (*k, p, *pen)
                })
                .filter(|x| x.1 > 0.0)
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            want.truncate(10);
            let (s, o) = get_json(&c, &format!("{base}/api/outlets/{outlet}")).await;
            assert_eq!(s, 200, "{o}");
            let got = o["segmentations"][0]["sku_gaps"]
                .as_array()
                .unwrap()
                .clone();
            let ids: Vec<&str> = got.iter().map(|g| g["sku_id"].as_str().unwrap()).collect();
            let want_ids: Vec<&str> = want.iter().map(|w| w.0).collect();
            assert_eq!(ids, want_ids, "{outlet} in {seg}");
            for (g, w) in got.iter().zip(&want) {
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
                assert!(
                    close(g["potential"].as_f64().unwrap(), w.1),
                    "{outlet}: {g} vs {w:?}"
                );
                assert!(
                    close(g["penetration"].as_f64().unwrap(), w.2),
                    "{outlet}: {g}"
                );
                assert_eq!(g["sku_name"], fx.sku_name(&g["sku_id"]));
            }
            checked += 1;
            listed += got.len();
        }
    }
    assert!(
        checked >= 4 && listed > 0,
        "{checked} outlets, {listed} SKUs"
    );
    token.cancel();
}
