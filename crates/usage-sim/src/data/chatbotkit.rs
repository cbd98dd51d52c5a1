//! ChatBotKit bots and usage records (credit tokens).

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use usage_core::model::ceil_ms;
use usage_core::{UNATTRIBUTED_AGENT, Window};

use super::{DataSpec, TruthFilter, pooled_name, random_cuid, random_ms};

const NAMES: &[&str] = &[
    "Support Agent",
    "Sales Concierge",
    "HR Helpdesk",
    "Docs Navigator",
    "Booking Assistant",
];
const MODELS: &[&str] = &["gpt-5.4", "gpt-4o-mini", "claude-4-sonnet", "mistral-large"];
const CHANNELS: &[&str] = &["widget", "api", "slack", "whatsapp"];

/// The record type whose counts `/bot/{botId}/usage/fetch` reports as `tokens`.
pub const BASE_TYPE: &str = "BASE";
/// The other (credit-token) record type the simulator generates.
pub const EMBEDDING_TYPE: &str = "EMBEDDING";

/// A ChatBotKit bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CbkBot {
    /// The bot id.
    pub id: String,
    /// The bot name.
    pub name: String,
    /// The model name.
    pub model: String,
    /// Creation time, epoch milliseconds.
    pub created_at: i64,
    /// Last update, epoch milliseconds.
    pub updated_at: i64,
    /// Meta data (`team`).
    pub meta: BTreeMap<String, String>,
}

/// A usage record (one event of credit tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CbkRecord {
    /// The record id (the list cursor is the id of a record).
    pub id: String,
    /// Creation time, epoch milliseconds.
    pub created_at: i64,
    /// Last update, epoch milliseconds.
    pub updated_at: i64,
    /// The usage type (`BASE` or `EMBEDDING`, both credit tokens).
    pub usage_type: String,
    /// The credit tokens.
    pub count: u64,
    /// The bot, when the usage belongs to one.
    pub bot_id: Option<String>,
    /// The conversation, if any.
    pub conversation_id: Option<String>,
    /// The message, if any.
    pub message_id: Option<String>,
    /// The task, if any.
    pub task_id: Option<String>,
    /// The contact (end user), if any.
    pub contact_id: Option<String>,
    /// The dataset, if any.
    pub dataset_id: Option<String>,
    /// Meta data (`channel` on bot records).
    pub meta: BTreeMap<String, String>,
}

/// ChatBotKit data: bots, records sorted by `(createdAt, id)`, and indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CbkData {
    bots: Vec<CbkBot>,
    records: Vec<CbkRecord>,
    by_id: HashMap<String, usize>,
    /// Record positions (ascending) per bot id.
    by_bot: HashMap<String, Vec<u32>>,
}

impl CbkData {
    pub(crate) fn generate(spec: &DataSpec, rng: &mut ChaCha8Rng) -> Self {
        let mut bots = Vec::with_capacity(spec.cbk_bots);
        for i in 0..spec.cbk_bots {
            let created = random_ms(rng, spec) - spec.span.num_milliseconds();
            bots.push(CbkBot {
                id: random_cuid(rng),
                name: pooled_name(NAMES, i),
                model: MODELS[i % MODELS.len()].to_owned(),
                created_at: created,
                updated_at: created + rng.random_range(0..86_400_000),
                meta: BTreeMap::from([(
                    "team".to_owned(),
                    ["cx", "sales", "ops"][i % 3].to_owned(),
                )]),
            });
        }
        let conv_pool = (spec.cbk_records / (spec.cbk_bots.max(1) * 6)).max(3);
        let conversations: Vec<Vec<String>> = bots
            .iter()
            .map(|_| (0..conv_pool).map(|_| random_cuid(rng)).collect())
            .collect();
        let contacts: Vec<String> = (0..(conv_pool / 2).max(4))
            .map(|_| random_cuid(rng))
            .collect();
        let mut seen = HashSet::with_capacity(spec.cbk_records);
        let mut records = Vec::with_capacity(spec.cbk_records);
        for _ in 0..spec.cbk_records {
            let mut id = random_cuid(rng);
            while !seen.insert(id.clone()) {
                id = random_cuid(rng);
            }
            let created_at = random_ms(rng, spec);
            let updated_at = created_at + rng.random_range(0..5);
            let mut r = CbkRecord {
                id,
                created_at,
                updated_at,
                usage_type: BASE_TYPE.to_owned(),
                count: 0,
                bot_id: None,
                conversation_id: None,
                message_id: None,
                task_id: None,
                contact_id: None,
                dataset_id: None,
                meta: BTreeMap::new(),
            };
            if !bots.is_empty() && rng.random_bool(0.85) {
                let b = usize::midpoint(
                    rng.random_range(0..bots.len()),
                    rng.random_range(0..bots.len()),
                );
                r.bot_id = Some(bots[b].id.clone());
                if rng.random_bool(0.9) {
                    r.count = rng.random_range(50..4000);
                    let c = rng.random_range(0..conv_pool);
                    r.conversation_id = Some(conversations[b][c].clone());
                    r.message_id = Some(random_cuid(rng));
                    if rng.random_bool(0.7) {
                        r.contact_id = Some(contacts[(c + b) % contacts.len()].clone());
                    }
                    r.meta.insert(
                        "channel".to_owned(),
                        CHANNELS[rng.random_range(0..CHANNELS.len())].to_owned(),
                    );
                } else {
                    EMBEDDING_TYPE.clone_into(&mut r.usage_type);
                    r.count = rng.random_range(10..800);
                    r.dataset_id = Some(random_cuid(rng));
                }
            } else if rng.random_bool(0.6) {
                r.count = rng.random_range(50..2500);
                r.task_id = Some(random_cuid(rng));
            } else {
                EMBEDDING_TYPE.clone_into(&mut r.usage_type);
                r.count = rng.random_range(10..800);
                r.dataset_id = Some(random_cuid(rng));
            }
            records.push(r);
        }
        records.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        let by_id = records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        let mut by_bot: HashMap<String, Vec<u32>> =
            bots.iter().map(|b| (b.id.clone(), Vec::new())).collect();
        for (i, r) in records.iter().enumerate() {
            if let Some(b) = &r.bot_id
                && let Some(v) = by_bot.get_mut(b)
            {
                v.push(i as u32);
            }
        }
        Self {
            bots,
            records,
            by_id,
            by_bot,
        }
    }

    /// Returns the bots.
    pub fn bots(&self) -> &[CbkBot] {
        &self.bots
    }

    /// Returns all records, sorted by `(createdAt, id)` ascending.
    pub fn records(&self) -> &[CbkRecord] {
        &self.records
    }

    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub(crate) fn bot_positions(&self, bot: &str) -> Option<&[u32]> {
        self.by_bot.get(bot).map(Vec::as_slice)
    }

    /// Returns the positions (into [`Self::records`]) of a bot's records with
    /// `from_ms <= createdAt <= to_ms`.
    pub(crate) fn bot_range(&self, bot: &str, from_ms: i64, to_ms: i64) -> &[u32] {
        let Some(pos) = self.bot_positions(bot) else {
            return &[];
        };
        let a = pos.partition_point(|&p| self.records[p as usize].created_at < from_ms);
        let b = pos.partition_point(|&p| self.records[p as usize].created_at <= to_ms);
        &pos[a..b.max(a)]
    }

    /// Returns the sum of `count` (credit tokens) of records with `createdAt` in the half-open
    /// window `w` that match `f`: `agent` = `botId` ([`UNATTRIBUTED_AGENT`] matches records
    /// without one), `user` = `contactId`, `conversation` = `conversationId`, `usage_type` =
    /// `type`.
    pub fn truth(&self, f: &TruthFilter, w: Window) -> u64 {
        let (lo, hi) = (ceil_ms(w.start), ceil_ms(w.end));
        let a = self.records.partition_point(|r| r.created_at < lo);
        let b = self.records.partition_point(|r| r.created_at < hi);
        self.records[a..b.max(a)]
            .iter()
            .filter(|r| {
                let agent = r.bot_id.as_deref().unwrap_or(UNATTRIBUTED_AGENT);
                // ChatBotKit records name no model.
                f.model.is_none()
                    && TruthFilter::matches_opt(f.agent.as_ref(), Some(agent))
                    && TruthFilter::matches_opt(f.user.as_ref(), r.contact_id.as_deref())
                    && TruthFilter::matches_opt(
                        f.conversation.as_ref(),
                        r.conversation_id.as_deref(),
                    )
                    && TruthFilter::matches_opt(f.usage_type.as_ref(), Some(&r.usage_type))
            })
            .map(|r| r.count)
            .sum()
    }
}
