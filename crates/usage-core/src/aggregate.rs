//! Aggregation of provider points into response rows and per-unit totals.

use std::collections::BTreeMap;

use crate::model::{Counters, Dimension, SourceInfo, Unit, UsagePoint, Window};
use crate::money::Costs;

/// One response row: a bucket, the grouped dimension values, a unit and its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The bucket, or `None` when the query is not bucketed.
    pub bucket: Option<Window>,
    /// Values of the `group_by` dimensions, in `group_by` order (`None` = the source has no such
    /// dimension, or the value is unknown).
    pub dims: Vec<Option<String>>,
    /// The agent's name, when `agent` is grouped and the name is known.
    pub agent_name: Option<String>,
    /// The unit.
    pub unit: Unit,
    /// The counters.
    pub counters: Counters,
    /// What the row's usage cost, and how much of it no cost covers.
    pub cost: PointCost,
}

/// The money of a point, a row or a total: amounts per currency, and the quantity (of the
/// unit's counters) that no price or vendor cost covers, so that unpriced usage is reported
/// instead of being priced at 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PointCost {
    /// Amounts per currency.
    pub cost: Costs,
    /// The quantity without a cost.
    pub unpriced: u64,
    /// A sum exceeded what a decimal holds (beyond 7.9 × 10²⁸): `cost` is incomplete and is
    /// not shown.
    pub overflowed: bool,
}

impl PointCost {
    /// Adds another cost: amounts per currency, unpriced quantities. An amount whose sum would
    /// overflow a decimal is not added; `overflowed` is then set, never a wrong sum shown.
    pub fn add(&mut self, other: &PointCost) {
        if other.overflowed || self.cost.merge(&other.cost).is_none() {
            self.overflowed = true;
        }
        self.unpriced = self.unpriced.saturating_add(other.unpriced);
    }
}

/// How a source's points are costed in an aggregation.
#[derive(Debug, Clone, Copy)]
pub enum Costing<'a> {
    /// Nothing prices them: all their quantity is unpriced.
    None,
    /// One cost per point, in the order of the points.
    Each(&'a [PointCost]),
}

/// Rows and per-unit totals of a query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregation {
    /// Rows sorted by bucket, then by dimension values, then unit.
    pub rows: Vec<Row>,
    /// One entry per unit that appears, sorted by unit.
    pub totals: Vec<(Unit, Counters)>,
    /// The cost of each unit's totals.
    pub total_costs: BTreeMap<Unit, PointCost>,
}

/// One source's contribution to an aggregation.
#[derive(Debug, Clone, Copy)]
pub struct SourcePoints<'a> {
    /// The source.
    pub info: &'a SourceInfo,
    /// Its points.
    pub points: &'a [UsagePoint],
    /// How they are costed.
    pub costing: Costing<'a>,
}

type RowKey = (Option<Window>, Vec<Option<String>>, Unit);
type RowKeyRef<'a> = (Option<Window>, &'a [Option<String>], Unit);

/// Groups points by `group_by` (and by bucket when `bucketed`), summing counters and costs per
/// unit. Points with neither usage nor cost are left out; totals never mix units, costs never
/// mix currencies.
pub fn aggregate<'a>(
    inputs: impl IntoIterator<Item = SourcePoints<'a>>,
    group_by: &[Dimension],
    bucketed: bool,
) -> Aggregation {
    let mut rows: BTreeMap<RowKey, (Option<String>, Counters, PointCost)> = BTreeMap::new();
    let mut totals: BTreeMap<Unit, (Counters, PointCost)> = BTreeMap::new();
    let wants_name = group_by.contains(&Dimension::Agent);
    for SourcePoints {
        info,
        points,
        costing,
    } in inputs
    {
        for (i, p) in points.iter().enumerate() {
            let cost = match costing {
                Costing::Each(costs) => costs.get(i),
                Costing::None => None,
            };
            if p.counters.is_zero() && cost.is_none_or(|c| c.cost.is_empty()) {
                continue;
            }
            let dims = group_by
                .iter()
                .map(|d| match d {
                    Dimension::Source => Some(info.name.clone()),
                    Dimension::Provider => Some(info.provider.as_str().to_owned()),
                    other => p.key.get(*other).map(str::to_owned),
                })
                .collect();
            let bucket = bucketed.then_some(p.window);
            let entry = rows.entry((bucket, dims, p.unit)).or_default();
            if wants_name && entry.0.is_none() {
                entry.0.clone_from(&p.agent_name);
            }
            entry.1.add(&p.counters);
            let total = totals.entry(p.unit).or_default();
            total.0.add(&p.counters);
            match (costing, cost) {
                (Costing::Each(_), Some(c)) => {
                    entry.2.add(c);
                    total.1.add(c);
                }
                // Nothing prices these points: all their quantity is unpriced (an integer
                // sum per row; no amounts to merge).
                (Costing::None, _) => {
                    let n = p.counters.total();
                    entry.2.unpriced = entry.2.unpriced.saturating_add(n);
                    total.1.unpriced = total.1.unpriced.saturating_add(n);
                }
                (Costing::Each(_), None) => {}
            }
        }
    }
    let (totals, total_costs): (Vec<(Unit, Counters)>, BTreeMap<Unit, PointCost>) = totals
        .into_iter()
        .map(|(unit, (counters, cost))| ((unit, counters), (unit, cost)))
        .unzip();
    Aggregation {
        rows: rows
            .into_iter()
            .map(|((bucket, dims, unit), (agent_name, counters, cost))| Row {
                bucket,
                dims,
                agent_name,
                unit,
                counters,
                cost,
            })
            .collect(),
        totals,
        total_costs,
    }
}

/// Gives a bucketed aggregation a row for every bucket in `buckets` and every group (dimension
/// values and unit) that has a row in any bucket, with zero counters where the group had no
/// usage; rows stay sorted by bucket, then dimensions, then unit, and totals do not change.
/// Refuses (returning the rows it would need) when that is more than `max_rows`.
pub fn fill_zero(agg: &mut Aggregation, buckets: &[Window], max_rows: usize) -> Result<(), usize> {
    // Each group once, with the agent name its first row carries.
    let mut groups: BTreeMap<(&[Option<String>], Unit), &Option<String>> = BTreeMap::new();
    for r in &agg.rows {
        groups
            .entry((r.dims.as_slice(), r.unit))
            .or_insert(&r.agent_name);
    }
    let needed = groups.len().saturating_mul(buckets.len());
    if needed > max_rows {
        return Err(needed);
    }
    let present: std::collections::BTreeSet<RowKeyRef<'_>> = agg
        .rows
        .iter()
        .map(|r| (r.bucket, r.dims.as_slice(), r.unit))
        .collect();
    let mut zeros = Vec::with_capacity(needed.saturating_sub(agg.rows.len()));
    for bucket in buckets {
        for (&(dims, unit), &agent_name) in &groups {
            if !present.contains(&(Some(*bucket), dims, unit)) {
                zeros.push(Row {
                    bucket: Some(*bucket),
                    dims: dims.to_vec(),
                    agent_name: agent_name.clone(),
                    unit,
                    counters: Counters::default(),
                    cost: PointCost::default(),
                });
            }
        }
    }
    agg.rows.extend(zeros);
    agg.rows
        .sort_by(|a, b| (a.bucket, &a.dims, a.unit).cmp(&(b.bucket, &b.dims, b.unit)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::model::{Attribution, PointKey, ProviderKind};

    fn info(name: &str) -> SourceInfo {
        SourceInfo {
            name: name.into(),
            provider: ProviderKind::STATIC,
            attribution: Attribution::Exact,
            dimensions: BTreeSet::from([Dimension::Agent, Dimension::User]),
            filters: BTreeSet::new(),
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
    }

    fn point(
        window: Window,
        agent: &str,
        user: Option<&str>,
        unit: Unit,
        c: Counters,
    ) -> UsagePoint {
        UsagePoint {
            window,
            key: PointKey {
                agent: Some(agent.into()),
                user: user.map(Into::into),
                ..PointKey::default()
            },
            agent_name: Some(format!("{agent}-name")),
            unit,
            counters: c,
        }
    }

    #[test]
    fn groups_sorts_and_never_mixes_units() {
        let w = Window::new(t0(), t0() + Duration::days(1));
        let c = |i, o, x| Counters {
            input: i,
            output: o,
            other: x,
        };
        let a = info("a");
        let b = info("b");
        let pa = vec![
            point(w, "x", Some("u1"), Unit::Tokens, c(1, 2, 0)),
            point(w, "x", Some("u2"), Unit::Tokens, c(10, 20, 0)),
        ];
        let pb = vec![point(w, "y", None, Unit::Credits, c(0, 0, 7))];
        let agg = aggregate(
            [
                SourcePoints {
                    info: &b,
                    points: &pb,
                    costing: Costing::None,
                },
                SourcePoints {
                    info: &a,
                    points: &pa,
                    costing: Costing::None,
                },
            ],
            &[Dimension::Source, Dimension::Agent],
            false,
        );
        assert_eq!(agg.rows.len(), 2);
        assert_eq!(agg.rows[0].dims, vec![Some("a".into()), Some("x".into())]);
        assert_eq!(agg.rows[0].counters, c(11, 22, 0));
        assert_eq!(agg.rows[0].agent_name.as_deref(), Some("x-name"));
        assert_eq!(agg.rows[1].unit, Unit::Credits);
        assert_eq!(
            agg.totals,
            vec![(Unit::Tokens, c(11, 22, 0)), (Unit::Credits, c(0, 0, 7))]
        );
        let by_user = aggregate(
            [SourcePoints {
                info: &b,
                points: &pb,
                costing: Costing::None,
            }],
            &[Dimension::User],
            false,
        );
        assert_eq!(by_user.rows[0].dims, vec![None]);
        assert_eq!(by_user.rows[0].agent_name, None);
    }

    #[test]
    fn costs_add_up_per_currency_and_unpriced_usage_is_counted() {
        use crate::money::{Currency, Money};
        let w = Window::new(t0(), t0() + Duration::days(1));
        let c = |i| Counters {
            input: i,
            output: 0,
            other: 0,
        };
        let usd = Currency::parse("USD").unwrap();
        let eur = Currency::parse("EUR").unwrap();
        let cost = |m: &[(Currency, &str)], unpriced| {
            let mut out = PointCost {
                unpriced,
                ..PointCost::default()
            };
            for (currency, amount) in m {
                out.cost
                    .add(Money::from_major(amount, *currency).unwrap())
                    .unwrap();
            }
            out
        };
        let priced = info("p");
        let plain = info("n");
        let vendor = info("v");
        let p_points = vec![
            point(w, "x", None, Unit::Tokens, c(10)),
            point(w, "x", None, Unit::Tokens, c(5)),
        ];
        let p_costs = vec![
            cost(&[(usd, "0.00005")], 0),
            cost(&[(usd, "0.00005"), (eur, "1")], 3),
        ];
        let n_points = vec![point(w, "x", None, Unit::Tokens, c(7))];
        // A vendor's usage with its share of the vendor's cost, and a cost no usage took (a
        // point with no usage).
        let v_usage = vec![point(w, "x", None, Unit::Tokens, c(4))];
        let v_usage_costs = vec![cost(&[], 0)];
        let v_cost_points = vec![point(w, "x", None, Unit::Tokens, c(0))];
        let v_costs = vec![cost(&[(usd, "2")], 0)];
        let agg = aggregate(
            [
                SourcePoints {
                    info: &priced,
                    points: &p_points,
                    costing: Costing::Each(&p_costs),
                },
                SourcePoints {
                    info: &plain,
                    points: &n_points,
                    costing: Costing::None,
                },
                SourcePoints {
                    info: &vendor,
                    points: &v_usage,
                    costing: Costing::Each(&v_usage_costs),
                },
                SourcePoints {
                    info: &vendor,
                    points: &v_cost_points,
                    costing: Costing::Each(&v_costs),
                },
            ],
            &[Dimension::Agent],
            false,
        );
        assert_eq!(agg.rows.len(), 1);
        let row = &agg.rows[0];
        assert_eq!(row.counters, c(26));
        let shown: Vec<String> = row
            .cost
            .cost
            .iter()
            .map(|m| format!("{} {}", m.display_amount(), m.currency))
            .collect();
        // 0.00005 + 0.00005 + 2 exactly, rounded once: 2.0001 (each rounded first: 2.0002).
        assert_eq!(shown, ["1.0000 EUR", "2.0001 USD"]);
        // 3 priced nowhere in the priced source, 7 of the source without prices.
        assert_eq!(row.cost.unpriced, 10);
        assert_eq!(agg.total_costs[&Unit::Tokens], row.cost);
        // A point with neither usage nor cost makes no row.
        let empty = aggregate(
            [SourcePoints {
                info: &vendor,
                points: &v_cost_points,
                costing: Costing::None,
            }],
            &[Dimension::Agent],
            false,
        );
        assert!(empty.rows.is_empty());
    }

    #[test]
    fn fill_zero_gives_every_bucket_of_every_group() {
        let day = |d| Window::new(t0() + Duration::days(d), t0() + Duration::days(d + 1));
        let c = |n| Counters {
            input: n,
            output: 0,
            other: 0,
        };
        let src = info("s");
        // Agent x has usage on days 0 and 2 (tokens), y on day 1 (credits); day 3 has none.
        let points = vec![
            point(day(0), "x", None, Unit::Tokens, c(1)),
            point(day(2), "x", None, Unit::Tokens, c(2)),
            point(day(1), "y", None, Unit::Credits, c(3)),
        ];
        let input = || {
            aggregate(
                [SourcePoints {
                    info: &src,
                    points: &points,
                    costing: Costing::None,
                }],
                &[Dimension::Agent],
                true,
            )
        };
        let buckets: Vec<Window> = (0..4).map(day).collect();
        let mut agg = input();
        let before = agg.clone();
        fill_zero(&mut agg, &buckets, 8).unwrap();
        let got: Vec<(Window, &str, Unit, u64)> = agg
            .rows
            .iter()
            .map(|r| {
                (
                    r.bucket.unwrap(),
                    r.dims[0].as_deref().unwrap(),
                    r.unit,
                    r.counters.input,
                )
            })
            .collect();
        let mut want = Vec::new();
        for (d, x, y) in [(0, 1, 0), (1, 0, 3), (2, 2, 0), (3, 0, 0)] {
            want.push((day(d), "x", Unit::Tokens, x));
            want.push((day(d), "y", Unit::Credits, y));
        }
        assert_eq!(got, want);
        // Names ride along on zero rows; totals are unchanged.
        assert!(agg.rows.iter().all(|r| r.agent_name.is_some()));
        assert_eq!(agg.totals, before.totals);
        // Above the row limit: refused with the rows needed, nothing changed.
        let mut agg = input();
        assert_eq!(fill_zero(&mut agg, &buckets, 7), Err(8));
        assert_eq!(agg, before);
        // No usage at all: no groups, no rows.
        let mut empty = Aggregation::default();
        fill_zero(&mut empty, &buckets, 8).unwrap();
        assert!(empty.rows.is_empty());
    }

    /// The range the property samples: ten months, starting and ending off any local midnight,
    /// so that every bucket kind has clipped first and last buckets and full ones between.
    fn prop_range() -> Window {
        Window::new(
            Utc.with_ymd_and_hms(2026, 2, 14, 5, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 9, 17, 45, 0).unwrap(),
        )
    }

    /// The zones sampled: UTC, two with one-hour DST shifts on different dates, and Lord Howe,
    /// whose DST shift is 30 minutes.
    const PROP_ZONES: [chrono_tz::Tz; 4] = [
        chrono_tz::UTC,
        chrono_tz::Europe::Berlin,
        chrono_tz::America::New_York,
        chrono_tz::Australia::Lord_Howe,
    ];

    /// The 2026 offset changes of the sampled zones inside `prop_range()` (checked by
    /// `dst_edges_are_offset_changes`), around which a part of the points is placed.
    fn dst_edges() -> [DateTime<Utc>; 6] {
        let utc = |m, d, h, min| Utc.with_ymd_and_hms(2026, m, d, h, min, 0).unwrap();
        [
            utc(3, 8, 7, 0),    // New York springs forward
            utc(3, 29, 1, 0),   // Berlin springs forward
            utc(4, 4, 15, 0),   // Lord Howe falls back (30 min)
            utc(10, 3, 15, 30), // Lord Howe springs forward (30 min)
            utc(10, 25, 1, 0),  // Berlin falls back
            utc(11, 1, 6, 0),   // New York falls back
        ]
    }

    #[test]
    fn dst_edges_are_offset_changes() {
        use chrono::Offset;
        for edge in dst_edges() {
            assert!(prop_range().contains(edge));
            let changes = PROP_ZONES.iter().any(|tz| {
                let offset = |t: DateTime<Utc>| t.with_timezone(tz).offset().fix();
                offset(edge - Duration::minutes(1)) != offset(edge)
            });
            assert!(changes, "{edge}");
        }
    }

    /// Minutes after the range start: half anywhere in the range, half within 36 hours of an
    /// offset change.
    fn arb_minute() -> impl Strategy<Value = i64> {
        let range = prop_range();
        let len = (range.end - range.start).num_minutes();
        let edges = dst_edges();
        prop_oneof![
            0..len,
            (0..edges.len(), -36 * 60i64..36 * 60)
                .prop_map(move |(i, d)| (edges[i] - range.start).num_minutes() + d),
        ]
    }

    fn arb_points() -> impl Strategy<Value = Vec<(i64, u8, u8, bool, u32, u32, u32)>> {
        prop::collection::vec(
            (
                arb_minute(),
                0u8..3,
                0u8..3,
                any::<bool>(),
                0u32..10_000,
                0u32..10_000,
                0u32..100,
            ),
            0..60,
        )
    }

    fn arb_group_by() -> impl Strategy<Value = Vec<Dimension>> {
        prop::sample::subsequence(Dimension::ALL.to_vec(), 0..=7).prop_shuffle()
    }

    proptest! {
        // A fixed seed: the same cases on every run and machine (no regression file needed).
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: prop::test_runner::RngSeed::Fixed(0x5eed_2026),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn totals_do_not_depend_on_grouping_or_buckets(
            raw in arb_points(),
            g1 in arb_group_by(),
            g2 in arb_group_by(),
            bucket in prop::sample::select(vec![
                crate::time::Bucket::None,
                crate::time::Bucket::Hour,
                crate::time::Bucket::Day,
                crate::time::Bucket::Week,
                crate::time::Bucket::Month,
            ]),
            tz in prop::sample::select(PROP_ZONES.to_vec()),
        ) {
            let src = info("s");
            let range = prop_range();
            let windows = crate::time::buckets(range, tz, bucket, 10_000).unwrap();
            // The buckets tile the range: no gap, no overlap, clipped at both ends.
            prop_assert_eq!(windows.first().map(|w| w.start), Some(range.start));
            prop_assert_eq!(windows.last().map(|w| w.end), Some(range.end));
            for pair in windows.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start);
                prop_assert!(pair[0].start < pair[0].end);
                // Inner edges are local: the hour, midnight, Monday midnight, the 1st.
                let edge = pair[1].start.with_timezone(&tz);
                let midnight = (edge.hour(), edge.minute()) == (0, 0);
                prop_assert!(match bucket {
                    crate::time::Bucket::None => false,
                    crate::time::Bucket::Hour => edge.minute() == 0,
                    crate::time::Bucket::Day => midnight,
                    crate::time::Bucket::Week => midnight && edge.weekday() == chrono::Weekday::Mon,
                    crate::time::Bucket::Month => midnight && edge.day() == 1,
                }, "{:?} edge {} in {}", bucket, edge, tz);
            }
            let q = crate::model::UsageQuery::new(windows, BTreeSet::new());
            let mut bucketed = Vec::new();
            let mut whole = Vec::new();
            for (m, a, u, credits, i, o, x) in raw {
                let at = range.start + Duration::minutes(m);
                let unit = if credits { Unit::Credits } else { Unit::Tokens };
                let c = Counters { input: i.into(), output: o.into(), other: x.into() };
                let user = format!("u{u}");
                let w = q.window_of(at);
                prop_assert!(w.is_some(), "{} falls in no {:?} bucket in {}", at, bucket, tz);
                bucketed.push(point(w.unwrap(), &format!("a{a}"), Some(&user), unit, c));
                whole.push(point(range, &format!("a{a}"), Some(&user), unit, c));
            }
            let x = aggregate([SourcePoints { info: &src, points: &bucketed, costing: Costing::None }], &g1, true);
            let y = aggregate([SourcePoints { info: &src, points: &whole, costing: Costing::None }], &g2, false);
            prop_assert_eq!(&x.totals, &y.totals);
            // Bucket sums equal the un-bucketed total, per unit.
            let mut sums: BTreeMap<Unit, Counters> = BTreeMap::new();
            for r in &x.rows {
                prop_assert_eq!(r.counters.total(), r.counters.input + r.counters.output + r.counters.other);
                sums.entry(r.unit).or_default().add(&r.counters);
            }
            prop_assert_eq!(sums.into_iter().collect::<Vec<_>>(), y.totals);
        }
    }
}
