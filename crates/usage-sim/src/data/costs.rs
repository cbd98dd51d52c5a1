//! Costs: the simulators' fixed price lists, each usage event priced exactly (`rust_decimal`),
//! and the ground truth of the cost APIs (`GET /v1/organization/costs`,
//! `GET /v1/organizations/cost_report`) computed from the events, independently of how the
//! simulators put amounts on the wire.
//!
//! OpenAI prices are per token (or per image, character, second, session, call) in dollars;
//! many are tiny (`$0.075` per million cached input tokens), so a day's amounts carry many
//! decimal places and sums of them read as `f64` drift from the exact sum. Anthropic prices are
//! per million tokens in dollars; its cost report states cents.

use rust_decimal::Decimal;
use usage_core::money::{Costs, Currency, Money};
use usage_core::{UNATTRIBUTED_AGENT, Window};

use super::openai::{MODEL_4O, MODEL_AUDIO, MODEL_EMBEDDING, MODEL_IMAGE, MODEL_MINI};
use super::{AnthropicData, AnthropicEvent, OpenAiData, OpenAiEndpoint, OpenAiEvent, TruthFilter};

/// `text` (a decimal literal) divided by `per`, exactly.
fn price(text: &str, per: u64) -> Decimal {
    Decimal::from_str_exact(text).unwrap_or_default() / Decimal::from(per)
}

/// Dollars per million tokens of a chat model: (input, output).
fn openai_token_prices(model: &str) -> (&'static str, &'static str) {
    match model {
        MODEL_MINI => ("0.15", "0.60"),
        MODEL_4O | MODEL_AUDIO => ("2.50", "10.00"),
        MODEL_IMAGE => ("5.00", "40.00"),
        MODEL_EMBEDDING => ("0.02", "0"),
        _ => ("1.00", "4.00"),
    }
}

/// One priced part of an OpenAI event: a line item (`<model>, <kind>`, or `<kind>` alone for
/// usage of no model), its quantity and unit, and its amount in dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiCostItem {
    /// The model, when the line item names one.
    pub model: Option<String>,
    /// The kind of usage (`input`, `cached input`, `output`, `images`, ...).
    pub kind: &'static str,
    /// The quantity priced.
    pub quantity: u64,
    /// `quantity_unit` (`tokens`, `images`, `characters`, `duration_seconds`), or none.
    pub unit: Option<&'static str>,
    /// The amount, dollars.
    pub amount: Decimal,
}

impl OpenAiCostItem {
    /// The `line_item` on the wire.
    pub fn line_item(&self) -> String {
        match &self.model {
            Some(m) => format!("{m}, {}", self.kind),
            None => self.kind.to_owned(),
        }
    }
}

impl OpenAiEvent {
    /// The event's costs, one item per priced kind with a non-zero quantity (moderations are
    /// free and have none).
    pub fn cost_items(&self) -> Vec<OpenAiCostItem> {
        let model = self.model.clone();
        let (input, output) = openai_token_prices(model.as_deref().unwrap_or_default());
        let per_m = |text: &str, factor: u64| price(text, 1_000_000) * Decimal::from(factor);
        let input_p = per_m(input, 1);
        let output_p = per_m(output, 1);
        let item =
            |kind, quantity: u64, unit, unit_price: Decimal, with_model: bool| OpenAiCostItem {
                model: if with_model { model.clone() } else { None },
                kind,
                quantity,
                unit,
                amount: unit_price * Decimal::from(quantity),
            };
        let tokens = Some("tokens");
        let t = &self.tokens;
        let items = match self.endpoint {
            OpenAiEndpoint::Completions => vec![
                item("input", t.input_text, tokens, input_p, true),
                item(
                    "cached input",
                    t.cached_text,
                    tokens,
                    input_p / Decimal::TWO,
                    true,
                ),
                item(
                    "cache write input",
                    t.cache_write,
                    tokens,
                    input_p * Decimal::from_str_exact("1.25").unwrap_or_default(),
                    true,
                ),
                item(
                    "audio input",
                    t.input_audio,
                    tokens,
                    input_p * Decimal::from(16),
                    true,
                ),
                item(
                    "cached audio input",
                    t.cached_audio,
                    tokens,
                    input_p * Decimal::from(8),
                    true,
                ),
                item(
                    "image input",
                    t.input_image,
                    tokens,
                    input_p * Decimal::TWO,
                    true,
                ),
                item("cached image input", t.cached_image, tokens, input_p, true),
                item("output", t.output_text, tokens, output_p, true),
                item(
                    "audio output",
                    t.output_audio,
                    tokens,
                    output_p * Decimal::from(8),
                    true,
                ),
                item(
                    "image output",
                    t.output_image,
                    tokens,
                    output_p * Decimal::from(4),
                    true,
                ),
            ],
            OpenAiEndpoint::Embeddings => vec![item("input", self.quantity, tokens, input_p, true)],
            OpenAiEndpoint::Moderations => Vec::new(),
            OpenAiEndpoint::Images => vec![item(
                "images",
                self.quantity,
                Some("images"),
                price("0.042", 1),
                true,
            )],
            OpenAiEndpoint::AudioSpeeches => vec![item(
                "characters",
                self.quantity,
                Some("characters"),
                price("15", 1_000_000),
                true,
            )],
            OpenAiEndpoint::AudioTranscriptions => vec![item(
                "audio seconds",
                self.quantity,
                Some("duration_seconds"),
                price("0.0001", 1),
                true,
            )],
            OpenAiEndpoint::CodeInterpreterSessions => vec![item(
                "Code interpreter sessions",
                self.quantity,
                None,
                price("0.03", 1),
                false,
            )],
            OpenAiEndpoint::WebSearchCalls => vec![item(
                "web search tool calls",
                self.quantity,
                None,
                price("0.01", 1),
                true,
            )],
            OpenAiEndpoint::FileSearchCalls => vec![item(
                "File search tool calls",
                self.quantity,
                None,
                price("0.0025", 1),
                false,
            )],
        };
        items.into_iter().filter(|i| i.quantity > 0).collect()
    }
}

impl OpenAiData {
    /// The exact cost in `w` matching `f`, per currency (dollars), from the events and the
    /// price list. `f.agent` is a project id or [`UNATTRIBUTED_AGENT`]; `f.model` the model a
    /// line item names (usage of no model has none); `f.usage_type` a line item's kind
    /// (`input`, `cached input`, `output`, ...; the whole line item when it names no model).
    /// Costs have no users or conversations: `f.user` and `f.conversation` match nothing.
    pub fn cost_truth(&self, f: &TruthFilter, w: Window) -> Costs {
        let mut out = Costs::default();
        if f.user.is_some() || f.conversation.is_some() {
            return out;
        }
        for e in self.between(w.start, w.end) {
            let agent = e.project.as_deref().unwrap_or(UNATTRIBUTED_AGENT);
            if !TruthFilter::matches_opt(f.agent.as_ref(), Some(agent)) {
                continue;
            }
            for i in e.cost_items() {
                if TruthFilter::matches_opt(f.model.as_ref(), i.model.as_deref())
                    && TruthFilter::matches_opt(f.usage_type.as_ref(), Some(i.kind))
                {
                    let _ = out.add(Money {
                        amount: i.amount,
                        currency: Currency::USD,
                    });
                }
            }
        }
        out
    }
}

/// A model's name in Anthropic's cost descriptions and its dollars per million input and
/// output tokens.
fn anthropic_model(model: &str) -> (&'static str, &'static str, &'static str) {
    match model {
        "claude-sonnet-4-20250514" => ("Claude Sonnet 4", "3", "15"),
        "claude-opus-4-6" => ("Claude Opus 4.6", "5", "25"),
        "claude-3-5-haiku-20241022" => ("Claude Haiku 3.5", "0.80", "4"),
        "claude-haiku-4-5-20251001" => ("Claude Haiku 4.5", "1", "5"),
        _ => ("Claude", "3", "15"),
    }
}

/// One priced part of an Anthropic event, as the cost report describes it when grouped by
/// `description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicCostItem {
    /// `description` (`Claude Sonnet 4 Usage - Input Tokens`, `Web Search Usage`).
    pub description: String,
    /// `cost_type` (`tokens`, `web_search`).
    pub cost_type: &'static str,
    /// `model` (token costs only).
    pub model: Option<String>,
    /// `token_type` (token costs only).
    pub token_type: Option<&'static str>,
    /// The amount in dollars (the report states it in cents).
    pub amount: Decimal,
}

impl AnthropicEvent {
    /// The event's costs, one item per token type (and web search) with a non-zero quantity.
    pub fn cost_items(&self) -> Vec<AnthropicCostItem> {
        let (name, input, output) = anthropic_model(&self.model);
        let input_p = price(input, 1_000_000);
        let output_p = price(output, 1_000_000);
        let d = |s: &str| Decimal::from_str_exact(s).unwrap_or_default();
        let mut out: Vec<AnthropicCostItem> = [
            ("uncached_input_tokens", "Input Tokens", input_p),
            ("output_tokens", "Output Tokens", output_p),
            (
                "cache_read_input_tokens",
                "Cache Read Input Tokens",
                input_p * d("0.1"),
            ),
            (
                "cache_creation.ephemeral_5m_input_tokens",
                "Cache Write (5m) Input Tokens",
                input_p * d("1.25"),
            ),
            (
                "cache_creation.ephemeral_1h_input_tokens",
                "Cache Write (1h) Input Tokens",
                input_p * Decimal::TWO,
            ),
        ]
        .into_iter()
        .filter(|(ty, _, _)| self.quantity(ty) > 0)
        .map(|(ty, label, p)| AnthropicCostItem {
            description: format!("{name} Usage - {label}"),
            cost_type: "tokens",
            model: Some(self.model.clone()),
            token_type: Some(ty),
            amount: p * Decimal::from(self.quantity(ty)),
        })
        .collect();
        if self.web_search_requests > 0 {
            out.push(AnthropicCostItem {
                description: "Web Search Usage".to_owned(),
                cost_type: "web_search",
                model: None,
                token_type: None,
                amount: price("10", 1000) * Decimal::from(self.web_search_requests),
            });
        }
        out
    }
}

impl AnthropicData {
    /// The exact cost in `w` matching `f`, per currency (dollars), from the events as they
    /// happened and the price list. `f.agent` is a workspace id or `default`; `f.model` a
    /// model (web search has none); `f.usage_type` a `token_type`, or `web_search`. The cost
    /// report has no API keys or conversations: `f.user` and `f.conversation` match nothing.
    pub fn cost_truth(&self, f: &TruthFilter, w: Window) -> Costs {
        let mut out = Costs::default();
        if f.user.is_some() || f.conversation.is_some() {
            return out;
        }
        for e in self.between(w.start, w.end) {
            if !TruthFilter::matches_opt(f.agent.as_ref(), Some(e.agent())) {
                continue;
            }
            for i in e.cost_items() {
                let ty = i.token_type.unwrap_or(i.cost_type);
                if TruthFilter::matches_opt(f.model.as_ref(), i.model.as_deref())
                    && TruthFilter::matches_opt(f.usage_type.as_ref(), Some(ty))
                {
                    let _ = out.add(Money {
                        amount: i.amount,
                        currency: Currency::USD,
                    });
                }
            }
        }
        out
    }
}
