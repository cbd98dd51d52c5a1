//! Data generation: determinism, shape and the quirks the simulators need.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::Duration;
use usage_core::Window;
use usage_sim::{BASE_TYPE, DataSpec, Dataset, HIGH_INPUT_TOKENS, TruthFilter};

use crate::common::{now, spec, windows};

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let a = Dataset::generate(&spec());
    assert_eq!(a, Dataset::generate(&spec()));
    let other = DataSpec { seed: 7, ..spec() };
    let b = Dataset::generate(&other);
    assert_ne!(a.digitalocean, b.digitalocean);
    assert_ne!(a.kibana, b.kibana);
    assert_ne!(a.chatbotkit, b.chatbotkit);
    // Each vendor has its own stream: more ChatBotKit records leave the others untouched.
    let bigger = DataSpec {
        cbk_records: 900,
        ..spec()
    };
    let c = Dataset::generate(&bigger);
    assert_eq!(a.digitalocean, c.digitalocean);
    assert_eq!(a.kibana, c.kibana);
    assert_ne!(a.chatbotkit, c.chatbotkit);
}

#[test]
fn sizes_follow_the_spec_and_usage_stays_in_the_span() {
    let s = spec();
    let d = Dataset::generate(&s);
    let span = Window::new(s.origin(), s.now);
    assert_eq!(d.digitalocean.agents().len(), s.do_agents);
    let events: usize = d
        .digitalocean
        .agents()
        .iter()
        .map(|a| d.digitalocean.events(&a.uuid).len())
        .sum();
    assert_eq!(events, s.do_events);
    assert!(d.digitalocean.agents().iter().all(|a| {
        d.digitalocean
            .events(&a.uuid)
            .iter()
            .all(|e| span.contains(e.at))
    }));
    for space in &s.kibana_spaces {
        let agents = d.kibana.agents(space);
        assert_eq!(agents.len(), s.kibana_agents_per_space);
        for a in agents {
            let convs = d.kibana.conversations(space, &a.id);
            assert_eq!(convs.len(), s.kibana_conversations_per_agent);
            assert!(
                convs
                    .iter()
                    .all(|c| span.contains(c.updated_at) && c.created_at <= c.updated_at)
            );
        }
    }
    assert_eq!(d.chatbotkit.bots().len(), s.cbk_bots);
    assert_eq!(d.chatbotkit.records().len(), s.cbk_records);
}

#[test]
fn digitalocean_data_has_every_quirk() {
    let d = Dataset::generate(&spec()).digitalocean;
    let agents = d.agents();
    assert!(agents.iter().any(|a| a.updated_at.is_none()));
    assert!(agents.iter().any(|a| !a.deployed));
    assert!(agents.iter().any(|a| a.omit_log_insights_block));
    assert!(agents.iter().any(|a| a.split_input_measurement));
    let types: BTreeSet<(bool, String)> = agents
        .iter()
        .flat_map(|a| d.events(&a.uuid))
        .map(|e| (e.log_insights, e.usage_type.clone()))
        .collect();
    assert!(types.contains(&(false, "INPUT".into())));
    assert!(types.contains(&(false, "OUTPUT".into())));
    assert!(
        types
            .iter()
            .any(|(li, t)| !li && t != "INPUT" && t != "OUTPUT")
    );
    assert!(types.iter().any(|(li, _)| *li));
    // Truth splits by category: log insights only ever count as `other`.
    let all = Window::new(spec().origin(), now());
    let total = d.truth(&TruthFilter::default(), all);
    let li: u64 = ["log_insights:INPUT", "log_insights:OUTPUT"]
        .iter()
        .map(|t| {
            d.truth(
                &TruthFilter {
                    usage_type: Some((*t).into()),
                    ..TruthFilter::default()
                },
                all,
            )
            .total()
        })
        .sum();
    let other = d.truth(
        &TruthFilter {
            usage_type: Some("USAGE_TYPE_UNSPECIFIED".into()),
            ..TruthFilter::default()
        },
        all,
    );
    assert_eq!(total.other, li + other.other);
    assert!(
        d.truth(
            &TruthFilter {
                user: Some("x".into()),
                ..TruthFilter::default()
            },
            all
        )
        .is_zero()
    );
}

#[test]
fn kibana_warnings_are_strictly_above_the_threshold() {
    let s = spec();
    let d = Dataset::generate(&s).kibana;
    let mut warned = 0;
    for space in d.spaces() {
        for a in d.agents(space) {
            for c in d.conversations(space, &a.id) {
                assert!(
                    c.warnings
                        .iter()
                        .all(|w| w.input_tokens > HIGH_INPUT_TOKENS)
                );
                warned += usize::from(!c.warnings.is_empty());
            }
        }
    }
    assert!(warned > 0);
    let all = Window::new(s.origin(), s.now);
    assert!(d.warnings("default", &TruthFilter::default(), all) > 0);
    assert!(
        d.truth(
            "default",
            &TruthFilter {
                usage_type: Some("x".into()),
                ..TruthFilter::default()
            },
            all
        )
        .is_zero()
    );
    assert!(d.truth("nope", &TruthFilter::default(), all).is_zero());
}

#[test]
fn chatbotkit_records_are_mostly_base_and_some_unattributed() {
    let d = Dataset::generate(&spec()).chatbotkit;
    let r = d.records();
    let base = r.iter().filter(|r| r.usage_type == BASE_TYPE).count();
    assert!(base * 2 > r.len());
    assert!(r.iter().any(|r| r.bot_id.is_none()));
    let ids: BTreeSet<&str> = r.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), r.len());
    assert!(
        r.windows(2)
            .all(|w| (w[0].created_at, &w[0].id) < (w[1].created_at, &w[1].id))
    );
}

#[test]
fn bench_spec_is_big() {
    let b = DataSpec::bench(now());
    assert!(b.kibana_conversations_per_agent >= 20_000);
    assert!(b.cbk_records >= 100_000);
    let s = spec();
    assert!(s.cbk_records <= 1_000 && s.do_events <= 1_000);
}

/// FNV-1a over a text: a fingerprint that stays the same across runs and platforms.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Fingerprints of `DataSpec::small` as generated before Kibana conversations had rounds: the
/// rounds must not draw from the generator's stream, because tests and benchmarks elsewhere
/// rely on these exact data (DigitalOcean and ChatBotKit whole, Kibana's conversations by
/// everything but their rounds).
#[test]
fn small_data_is_unchanged_by_kibana_rounds() {
    let d = Dataset::generate(&spec());
    let mut kibana = String::new();
    for space in d.kibana.spaces() {
        for a in d.kibana.agents(space) {
            writeln!(kibana, "{space} {a:?}").unwrap();
            for c in d.kibana.conversations(space, &a.id) {
                writeln!(
                    kibana,
                    "{} {:?} {:?} {} {} {} {} {} {} {} {:?}",
                    c.id,
                    c.title,
                    c.user_id,
                    c.username,
                    c.created_at.timestamp_millis(),
                    c.updated_at.timestamp_millis(),
                    c.input_tokens,
                    c.output_tokens,
                    c.round_count,
                    c.llm_calls,
                    c.warnings,
                )
                .unwrap();
            }
        }
    }
    let got = [
        fnv(&format!("{:?}", d.digitalocean)),
        fnv(&kibana),
        // Bots and records (the struct's own indexes are hash maps, printed in any order).
        fnv(&format!(
            "{:?} {:?}",
            d.chatbotkit.bots(),
            d.chatbotkit.records()
        )),
    ];
    assert_eq!(
        got,
        [
            0xba8a_bc3d_4bce_2fa7,
            0x8747_04db_00ca_620c,
            0x7a55_cf56_3217_dd31
        ]
    );
}

/// Rounds are when a conversation's usage happened: ascending from `created_at` to
/// `updated_at` at distinct milliseconds, summing to the lifetime totals, the warnings exactly
/// those of the rounds above the threshold. Some conversations last days, so polls days apart
/// see them grow.
#[test]
fn kibana_rounds_sum_to_the_totals_and_span_each_conversation() {
    let d = Dataset::generate(&spec()).kibana;
    let mut multi_day = 0;
    for space in d.spaces() {
        for a in d.agents(space) {
            for c in d.conversations(space, &a.id) {
                let r = &c.rounds;
                assert_eq!(r.len() as u64, c.round_count, "{}", c.id);
                assert_eq!(
                    r.iter().map(|r| r.input_tokens).sum::<u64>(),
                    c.input_tokens
                );
                assert_eq!(
                    r.iter().map(|r| r.output_tokens).sum::<u64>(),
                    c.output_tokens
                );
                assert_eq!(r.iter().map(|r| r.llm_calls).sum::<u64>(), c.llm_calls);
                assert_eq!(r.last().unwrap().at, c.updated_at);
                if r.len() > 1 {
                    assert_eq!(r[0].at, c.created_at);
                }
                assert!(r.windows(2).all(|p| p[0].at < p[1].at), "{}", c.id);
                let warned: Vec<(String, u64)> = (1..)
                    .zip(r)
                    .filter(|(_, r)| r.input_tokens > HIGH_INPUT_TOKENS)
                    .map(|(i, r)| (format!("round-{i}"), r.input_tokens))
                    .collect();
                let warnings: Vec<(String, u64)> = c
                    .warnings
                    .iter()
                    .map(|w| (w.round_id.clone(), w.input_tokens))
                    .collect();
                assert_eq!(warned, warnings);
                // From `updated_at` on, the conversation shows itself; before its first round,
                // nothing.
                assert_eq!(c.as_of(c.updated_at).as_ref(), Some(c));
                assert_eq!(c.as_of(r[0].at - Duration::milliseconds(1)), None);
                multi_day += usize::from(c.updated_at - c.created_at >= Duration::days(4));
            }
        }
    }
    assert!(multi_day > 0);
}

/// As of an instant between two rounds, a conversation shows the totals and warnings of the
/// rounds so far, and its `updated_at` is the last such round's `at`.
#[test]
fn kibana_conversation_as_of_holds_the_rounds_so_far() {
    let d = Dataset::generate(&spec()).kibana;
    let c = d
        .conversations("default", "elastic-ai-agent")
        .iter()
        .find(|c| c.rounds.len() >= 3)
        .unwrap();
    let t = c.rounds[1].at + Duration::milliseconds(1);
    let v = c.as_of(t).unwrap();
    assert_eq!(v.round_count, 2);
    assert_eq!(v.updated_at, c.rounds[1].at);
    assert_eq!(v.created_at, c.created_at);
    assert_eq!(
        v.input_tokens,
        c.rounds[0].input_tokens + c.rounds[1].input_tokens
    );
    assert_eq!(
        v.output_tokens,
        c.rounds[0].output_tokens + c.rounds[1].output_tokens
    );
    assert_eq!(v.llm_calls, c.rounds[0].llm_calls + c.rounds[1].llm_calls);
    assert_eq!(v.rounds, c.rounds[..2]);
    assert!(
        v.warnings
            .iter()
            .all(|w| w.round_id == "round-1" || w.round_id == "round-2")
    );
}

/// `truth_rounds` places each round at its own instant and `truth` a conversation's whole total
/// at its `updated_at`: over all time they agree, per week they do not (conversations spanning
/// a week's end). `truth_as_of` the end of the span is `truth`; before the span it is empty.
#[test]
fn kibana_truth_rounds_and_truth_as_of_agree_with_truth_where_they_must() {
    let s = spec();
    let d = Dataset::generate(&s).kibana;
    let all = Window::new(s.origin(), s.now);
    let one = d.conversations("marketing", "elastic-ai-agent")[7]
        .id
        .clone();
    let filters = [
        TruthFilter::default(),
        TruthFilter::agent("elastic-ai-agent"),
        TruthFilter {
            user: Some("alice".into()),
            ..TruthFilter::default()
        },
        TruthFilter {
            conversation: Some(one),
            ..TruthFilter::default()
        },
        TruthFilter {
            usage_type: Some("x".into()),
            ..TruthFilter::default()
        },
    ];
    for space in d.spaces() {
        for f in &filters {
            assert_eq!(
                d.truth_rounds(space, f, all),
                d.truth(space, f, all),
                "{f:?}"
            );
            for w in windows() {
                assert_eq!(d.truth_as_of(space, f, w, s.now), d.truth(space, f, w));
            }
            let before = s.origin() - Duration::milliseconds(1);
            assert!(d.truth_as_of(space, f, all, before).is_zero());
        }
    }
    let f = TruthFilter::default();
    assert!(!d.truth_rounds("default", &f, all).is_zero());
    assert!(
        windows()
            .iter()
            .any(|w| d.truth_rounds("default", &f, *w) != d.truth("default", &f, *w))
    );
}
