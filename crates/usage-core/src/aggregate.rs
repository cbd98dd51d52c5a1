//! Aggregation of provider points into response rows and per-unit totals.

use std::collections::BTreeMap;

use crate::model::{Counters, Dimension, SourceInfo, Unit, UsagePoint, Window};

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
}

/// Rows and per-unit totals of a query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregation {
    /// Rows sorted by bucket, then by dimension values, then unit.
    pub rows: Vec<Row>,
    /// One entry per unit that appears, sorted by unit.
    pub totals: Vec<(Unit, Counters)>,
}

/// One source's contribution to an aggregation.
#[derive(Debug, Clone, Copy)]
pub struct SourcePoints<'a> {
    /// The source.
    pub info: &'a SourceInfo,
    /// Its points.
    pub points: &'a [UsagePoint],
}

type RowKey = (Option<Window>, Vec<Option<String>>, Unit);

/// Groups points by `group_by` (and by bucket when `bucketed`), summing counters per unit.
/// Rows whose counters are all zero are left out; totals never mix units.
pub fn aggregate<'a>(
    inputs: impl IntoIterator<Item = SourcePoints<'a>>,
    group_by: &[Dimension],
    bucketed: bool,
) -> Aggregation {
    let mut rows: BTreeMap<RowKey, (Option<String>, Counters)> = BTreeMap::new();
    let mut totals: BTreeMap<Unit, Counters> = BTreeMap::new();
    let wants_name = group_by.contains(&Dimension::Agent);
    for SourcePoints { info, points } in inputs {
        for p in points {
            if p.counters.is_zero() {
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
            let entry = rows
                .entry((bucket, dims, p.unit))
                .or_insert((None, Counters::default()));
            if wants_name && entry.0.is_none() {
                entry.0.clone_from(&p.agent_name);
            }
            entry.1.add(&p.counters);
            totals.entry(p.unit).or_default().add(&p.counters);
        }
    }
    Aggregation {
        rows: rows
            .into_iter()
            .map(|((bucket, dims, unit), (agent_name, counters))| Row {
                bucket,
                dims,
                agent_name,
                unit,
                counters,
            })
            .collect(),
        totals: totals.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{DateTime, Duration, TimeZone, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::model::{Attribution, PointKey, ProviderKind};

    fn info(name: &str) -> SourceInfo {
        SourceInfo {
            name: name.into(),
            provider: ProviderKind::Static,
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
                },
                SourcePoints {
                    info: &a,
                    points: &pa,
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
            }],
            &[Dimension::User],
            false,
        );
        assert_eq!(by_user.rows[0].dims, vec![None]);
        assert_eq!(by_user.rows[0].agent_name, None);
    }

    fn arb_points() -> impl Strategy<Value = Vec<(i64, u8, u8, bool, u32, u32, u32)>> {
        prop::collection::vec(
            (
                0i64..(24 * 14),
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
        prop::sample::subsequence(Dimension::ALL.to_vec(), 0..=6).prop_shuffle()
    }

    proptest! {
        #[test]
        fn totals_do_not_depend_on_grouping_or_buckets(
            raw in arb_points(),
            g1 in arb_group_by(),
            g2 in arb_group_by(),
            bucket in prop::sample::select(vec![crate::time::Bucket::Hour, crate::time::Bucket::Day, crate::time::Bucket::Week]),
        ) {
            let src = info("s");
            let tz = chrono_tz::UTC;
            let range = Window::new(t0(), t0() + Duration::days(14));
            let windows = crate::time::buckets(range, tz, bucket, 10_000).unwrap();
            let q = crate::model::UsageQuery::new(windows, BTreeSet::new());
            let mut bucketed = Vec::new();
            let mut whole = Vec::new();
            for (h, a, u, credits, i, o, x) in raw {
                let at = t0() + Duration::hours(h);
                let unit = if credits { Unit::Credits } else { Unit::Tokens };
                let c = Counters { input: i.into(), output: o.into(), other: x.into() };
                let user = format!("u{u}");
                bucketed.push(point(q.window_of(at).unwrap(), &format!("a{a}"), Some(&user), unit, c));
                whole.push(point(range, &format!("a{a}"), Some(&user), unit, c));
            }
            let x = aggregate([SourcePoints { info: &src, points: &bucketed }], &g1, true);
            let y = aggregate([SourcePoints { info: &src, points: &whole }], &g2, false);
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
