//! OpenAI organization usage: projects (one archived), users, models, and usage events at
//! minute resolution for every metered endpoint (completions with cached, cache-write, audio
//! and image tokens; embeddings; moderations; images; speech; transcriptions; code interpreter
//! sessions; web and file search calls), plus vector store levels.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use usage_core::{Counters, Dimension, PointKey, UNATTRIBUTED_AGENT, Unit, Window};

use super::{DataSpec, TruthFilter, ms_to_time, pooled_name, random_ms};

const PROJECT_NAMES: &[&str] = &[
    "Default project",
    "support-bot",
    "search-backend",
    "legacy-import",
    "voice-assistant",
    "marketing-copy",
];

/// The chat model with prompt caching.
pub const MODEL_MINI: &str = "gpt-4o-mini-2024-07-18";
/// The larger chat model (cache writes too).
pub const MODEL_4O: &str = "gpt-4o-2024-08-06";
/// The audio model (audio input and output tokens).
pub const MODEL_AUDIO: &str = "gpt-4o-audio-preview-2024-12-17";
/// The image model (image tokens in completions, and the images endpoint).
pub const MODEL_IMAGE: &str = "gpt-image-1";
pub(crate) const MODEL_EMBEDDING: &str = "text-embedding-3-small";
const MODEL_MODERATION: &str = "omni-moderation-latest";
const MODEL_TTS: &str = "tts-1";
const MODEL_WHISPER: &str = "whisper-1";

/// A metered usage endpoint (`/v1/organization/usage/<path>`), vector stores excepted (their
/// `usage_bytes` is a level, kept apart in [`OpenAiData::vector_store_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpenAiEndpoint {
    /// `completions`.
    Completions,
    /// `embeddings`.
    Embeddings,
    /// `moderations`.
    Moderations,
    /// `images`.
    Images,
    /// `audio_speeches`.
    AudioSpeeches,
    /// `audio_transcriptions`.
    AudioTranscriptions,
    /// `code_interpreter_sessions`.
    CodeInterpreterSessions,
    /// `web_search_calls`.
    WebSearchCalls,
    /// `file_search_calls`.
    FileSearchCalls,
}

impl OpenAiEndpoint {
    /// Every metered endpoint.
    pub const ALL: [Self; 9] = [
        Self::Completions,
        Self::Embeddings,
        Self::Moderations,
        Self::Images,
        Self::AudioSpeeches,
        Self::AudioTranscriptions,
        Self::CodeInterpreterSessions,
        Self::WebSearchCalls,
        Self::FileSearchCalls,
    ];

    /// The path segment (`completions`, `web_search_calls`, ...).
    pub fn path(self) -> &'static str {
        match self {
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Moderations => "moderations",
            Self::Images => "images",
            Self::AudioSpeeches => "audio_speeches",
            Self::AudioTranscriptions => "audio_transcriptions",
            Self::CodeInterpreterSessions => "code_interpreter_sessions",
            Self::WebSearchCalls => "web_search_calls",
            Self::FileSearchCalls => "file_search_calls",
        }
    }

    /// Parses a path segment.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.path() == s)
    }

    /// The unit of the endpoint's quantity.
    pub fn unit(self) -> Unit {
        match self {
            Self::Completions | Self::Embeddings | Self::Moderations => Unit::Tokens,
            Self::Images => Unit::Images,
            Self::AudioSpeeches => Unit::Characters,
            Self::AudioTranscriptions => Unit::Seconds,
            Self::CodeInterpreterSessions => Unit::Sessions,
            Self::WebSearchCalls | Self::FileSearchCalls => Unit::Requests,
        }
    }

    /// Whether the endpoint reports (groups and filters by) users.
    pub fn has_user(self) -> bool {
        self != Self::CodeInterpreterSessions
    }

    /// Whether the endpoint reports (groups and filters by) models.
    pub fn has_model(self) -> bool {
        !matches!(self, Self::CodeInterpreterSessions | Self::FileSearchCalls)
    }
}

/// Completion token counts of one event, split as the current schema splits them: uncached
/// input by modality, cached input by modality, cache writes, output by modality.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenAiTokens {
    /// Uncached text input (excluding cache writes).
    pub input_text: u64,
    /// Uncached audio input.
    pub input_audio: u64,
    /// Uncached image input.
    pub input_image: u64,
    /// Cached text input.
    pub cached_text: u64,
    /// Cached audio input.
    pub cached_audio: u64,
    /// Cached image input.
    pub cached_image: u64,
    /// Input written to the cache.
    pub cache_write: u64,
    /// Text output.
    pub output_text: u64,
    /// Audio output.
    pub output_audio: u64,
    /// Image output.
    pub output_image: u64,
}

impl OpenAiTokens {
    fn add(&mut self, o: &Self) {
        self.input_text += o.input_text;
        self.input_audio += o.input_audio;
        self.input_image += o.input_image;
        self.cached_text += o.cached_text;
        self.cached_audio += o.cached_audio;
        self.cached_image += o.cached_image;
        self.cache_write += o.cache_write;
        self.output_text += o.output_text;
        self.output_audio += o.output_audio;
        self.output_image += o.output_image;
    }

    /// Cached input over every modality.
    pub fn cached(&self) -> u64 {
        self.cached_text + self.cached_audio + self.cached_image
    }

    /// Uncached input over every modality (excluding cache writes).
    pub fn uncached(&self) -> u64 {
        self.input_text + self.input_audio + self.input_image
    }

    /// Output over every modality.
    pub fn output(&self) -> u64 {
        self.output_text + self.output_audio + self.output_image
    }
}

/// An OpenAI project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiProject {
    /// `proj_…`.
    pub id: String,
    /// The project name.
    pub name: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// When it was archived (Unix seconds); archived projects keep their usage.
    pub archived_at: Option<i64>,
}

/// One usage event: what one project's user did with one model on one endpoint in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiEvent {
    /// The minute (a whole minute).
    pub at: DateTime<Utc>,
    /// The endpoint it is metered by.
    pub endpoint: OpenAiEndpoint,
    /// The project id; `None` for usage OpenAI attributes to no project (`project_id: null`
    /// when grouped), which the provider reports as agent [`UNATTRIBUTED_AGENT`].
    pub project: Option<String>,
    /// The user id (`None` for service-account keys, and on endpoints without users).
    pub user: Option<String>,
    /// The model (`None` on endpoints without models).
    pub model: Option<String>,
    /// Batch API usage (completions only).
    pub batch: bool,
    /// `num_model_requests`.
    pub requests: u64,
    /// Completion tokens (completions only).
    pub tokens: OpenAiTokens,
    /// The endpoint's quantity: input tokens (embeddings, moderations), images, characters,
    /// seconds, sessions or search requests.
    pub quantity: u64,
}

impl OpenAiEvent {
    /// The event's usage as a provider reports it: `(usage_type, unit, counters)` per non-zero
    /// usage type (see the provider's mapping table).
    pub fn contributions(&self) -> Vec<(&'static str, Unit, Counters)> {
        let input = |n| Counters {
            input: n,
            ..Counters::default()
        };
        let other = |n| Counters {
            other: n,
            ..Counters::default()
        };
        let out: Vec<(&'static str, Unit, Counters)> = match self.endpoint {
            OpenAiEndpoint::Completions => {
                let t = &self.tokens;
                vec![
                    ("input", Unit::Tokens, input(t.input_text)),
                    (
                        "output",
                        Unit::Tokens,
                        Counters {
                            output: t.output_text,
                            ..Counters::default()
                        },
                    ),
                    ("input_cached", Unit::Tokens, other(t.cached())),
                    ("input_cache_write", Unit::Tokens, other(t.cache_write)),
                    ("input_audio", Unit::Tokens, other(t.input_audio)),
                    ("input_image", Unit::Tokens, other(t.input_image)),
                    ("output_audio", Unit::Tokens, other(t.output_audio)),
                    ("output_image", Unit::Tokens, other(t.output_image)),
                ]
            }
            OpenAiEndpoint::Embeddings => {
                vec![("embeddings:input", Unit::Tokens, input(self.quantity))]
            }
            OpenAiEndpoint::Moderations => {
                vec![("moderations:input", Unit::Tokens, input(self.quantity))]
            }
            e => vec![(e.path(), e.unit(), other(self.quantity))],
        };
        out.into_iter().filter(|(_, _, c)| !c.is_zero()).collect()
    }

    /// The metrics of the event, to be summed into a result row.
    pub(crate) fn metrics(&self) -> Metrics {
        Metrics {
            requests: self.requests,
            tokens: self.tokens,
            quantity: self.quantity,
        }
    }
}

/// Summed metrics of a result row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Metrics {
    pub(crate) requests: u64,
    pub(crate) tokens: OpenAiTokens,
    pub(crate) quantity: u64,
}

impl Metrics {
    pub(crate) fn add(&mut self, o: &Self) {
        self.requests += o.requests;
        self.tokens.add(&o.tokens);
        self.quantity += o.quantity;
    }
}

/// OpenAI data: projects, users, events sorted by time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiData {
    origin: DateTime<Utc>,
    now: DateTime<Utc>,
    projects: Vec<OpenAiProject>,
    users: Vec<String>,
    events: Vec<OpenAiEvent>,
    /// Serve completions in the LEGACY schema (no `input_uncached_tokens`; `input_tokens` is
    /// text (and image) input including cached and cache writes, `input_audio_tokens` includes
    /// cached audio, `output_tokens` excludes audio). The events, hence the truth, stay the same.
    pub legacy_completions: bool,
}

fn random_id(rng: &mut ChaCha8Rng, prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut s = String::from(prefix);
    for _ in 0..len {
        s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    s
}

impl OpenAiData {
    pub(crate) fn generate(spec: &DataSpec, rng: &mut ChaCha8Rng) -> Self {
        let origin = super::minute_floor(spec.origin());
        let mid = origin + spec.span / 2;
        let n_projects = spec.openai_projects.max(1);
        let projects: Vec<OpenAiProject> = (0..n_projects)
            .map(|i| OpenAiProject {
                id: random_id(rng, "proj_", 24),
                name: pooled_name(PROJECT_NAMES, i),
                created_at: (origin - Duration::days(30 + i64::try_from(i).unwrap_or(0)))
                    .timestamp(),
                // The fourth project was archived half-way through the span.
                archived_at: (i == 3).then(|| mid.timestamp()),
            })
            .collect();
        let users: Vec<String> = (0..spec.openai_users.max(1))
            .map(|_| random_id(rng, "user-", 24))
            .collect();
        let mut events = Vec::with_capacity(spec.openai_events);
        for i in 0..spec.openai_events {
            let at = super::minute_floor(ms_to_time(random_ms(rng, spec)));
            let mut p = rng.random_range(0..projects.len());
            if projects[p].archived_at.is_some_and(|a| at.timestamp() >= a) {
                p = 0;
            }
            // A tenth of the usage comes from service-account keys (no user).
            let user =
                (!rng.random_bool(0.1)).then(|| users[rng.random_range(0..users.len())].clone());
            let r: f64 = rng.random();
            let endpoint = match r {
                r if r < 0.50 => OpenAiEndpoint::Completions,
                r if r < 0.62 => OpenAiEndpoint::Embeddings,
                r if r < 0.67 => OpenAiEndpoint::Moderations,
                r if r < 0.73 => OpenAiEndpoint::Images,
                r if r < 0.78 => OpenAiEndpoint::AudioSpeeches,
                r if r < 0.83 => OpenAiEndpoint::AudioTranscriptions,
                r if r < 0.88 => OpenAiEndpoint::CodeInterpreterSessions,
                r if r < 0.94 => OpenAiEndpoint::WebSearchCalls,
                _ => OpenAiEndpoint::FileSearchCalls,
            };
            let requests = rng.random_range(1..20);
            let mut tokens = OpenAiTokens::default();
            let mut quantity = 0;
            let mut batch = false;
            let model = match endpoint {
                OpenAiEndpoint::Completions => {
                    let model =
                        [MODEL_MINI, MODEL_4O, MODEL_AUDIO, MODEL_IMAGE][rng.random_range(0..4)];
                    batch = model != MODEL_AUDIO && rng.random_bool(0.15);
                    tokens.input_text = rng.random_range(100..20_000);
                    tokens.output_text = rng.random_range(10..4_000);
                    if rng.random_bool(0.6) {
                        tokens.cached_text = rng.random_range(0..30_000);
                    }
                    if model == MODEL_4O && rng.random_bool(0.5) {
                        tokens.cache_write = rng.random_range(0..5_000);
                    }
                    if model == MODEL_AUDIO {
                        tokens.input_audio = rng.random_range(100..8_000);
                        tokens.cached_audio = rng.random_range(0..2_000);
                        tokens.output_audio = rng.random_range(100..6_000);
                    }
                    if model == MODEL_IMAGE {
                        tokens.input_image = rng.random_range(100..3_000);
                        tokens.cached_image = rng.random_range(0..500);
                        tokens.output_image = rng.random_range(1_000..6_000);
                    }
                    Some(model)
                }
                OpenAiEndpoint::Embeddings => {
                    quantity = rng.random_range(100..50_000);
                    Some(MODEL_EMBEDDING)
                }
                OpenAiEndpoint::Moderations => {
                    quantity = rng.random_range(20..5_000);
                    Some(MODEL_MODERATION)
                }
                OpenAiEndpoint::Images => {
                    quantity = rng.random_range(1..8);
                    Some(MODEL_IMAGE)
                }
                OpenAiEndpoint::AudioSpeeches => {
                    quantity = rng.random_range(20..4_000);
                    Some(MODEL_TTS)
                }
                OpenAiEndpoint::AudioTranscriptions => {
                    quantity = rng.random_range(5..900);
                    Some(MODEL_WHISPER)
                }
                OpenAiEndpoint::CodeInterpreterSessions => {
                    quantity = rng.random_range(1..4);
                    None
                }
                OpenAiEndpoint::WebSearchCalls => {
                    quantity = rng.random_range(1..30);
                    Some(MODEL_MINI)
                }
                OpenAiEndpoint::FileSearchCalls => {
                    quantity = rng.random_range(1..30);
                    None
                }
            };
            events.push(OpenAiEvent {
                at,
                endpoint,
                // Every 25th event belongs to no project (decided without the generator, so
                // that the rest of the data stays as it was).
                project: (i % 25 != 12).then(|| projects[p].id.clone()),
                user: user.filter(|_| endpoint.has_user()),
                model: model.map(str::to_owned),
                batch,
                requests,
                tokens,
                quantity,
            });
        }
        events.sort_by_key(|e| e.at);
        Self {
            origin,
            now: spec.now,
            projects,
            users,
            events,
            legacy_completions: false,
        }
    }

    /// Returns every project, archived ones included.
    pub fn projects(&self) -> &[OpenAiProject] {
        &self.projects
    }

    /// Returns every user id.
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// Returns every event, sorted by time.
    pub fn events(&self) -> &[OpenAiEvent] {
        &self.events
    }

    /// Returns the models used (sorted).
    pub fn models(&self) -> BTreeSet<&str> {
        self.events
            .iter()
            .filter_map(|e| e.model.as_deref())
            .collect()
    }

    /// Returns the first instant of the simulated span (a whole minute).
    pub fn origin(&self) -> DateTime<Utc> {
        self.origin
    }

    /// Returns the end of the simulated span (the default `end_time`).
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Returns the events with `lo <= at < hi`.
    pub(crate) fn between(&self, lo: DateTime<Utc>, hi: DateTime<Utc>) -> &[OpenAiEvent] {
        let (a, b) = super::range_of_by(&self.events, &lo, &hi, |e| e.at);
        &self.events[a..b]
    }

    /// A project's vector store level (`usage_bytes`) at `t`: a storage level, not usage over
    /// a bucket (why the provider refuses the endpoint). `None` before the span.
    pub fn vector_store_bytes(&self, project: usize, t: DateTime<Utc>) -> Option<u64> {
        let hours = u64::try_from((t - self.origin).num_hours()).ok()?;
        Some((project as u64 + 1) * 1_000_000 + hours * 1_024)
    }

    /// Returns the exact usage in `w` that matches `f`, per unit (usage types named as the
    /// provider names them: `input`, `output`, `input_cached`, `input_cache_write`,
    /// `input_audio`, `input_image`, `output_audio`, `output_image`, `embeddings:input`,
    /// `moderations:input`, `images`, `audio_speeches`, `audio_transcriptions`,
    /// `code_interpreter_sessions`, `web_search_calls`, `file_search_calls`).
    /// `f.agent` is a project id, or [`UNATTRIBUTED_AGENT`] for usage of no project;
    /// `f.conversation` matches nothing.
    pub fn truth(&self, f: &TruthFilter, w: Window) -> BTreeMap<Unit, Counters> {
        let mut out: BTreeMap<Unit, Counters> = BTreeMap::new();
        for ((_, unit), c) in self.truth_by(f, w, &BTreeSet::new()) {
            out.entry(unit).or_default().add(&c);
        }
        out
    }

    /// [`Self::truth`] split by the labels of `dims` (agent = project, user, model,
    /// usage_type; others are left `None`), as a provider's points keyed that way sum up.
    pub fn truth_by(
        &self,
        f: &TruthFilter,
        w: Window,
        dims: &BTreeSet<Dimension>,
    ) -> BTreeMap<(PointKey, Unit), Counters> {
        let mut out: BTreeMap<(PointKey, Unit), Counters> = BTreeMap::new();
        if f.conversation.is_some() {
            return out;
        }
        for e in self.between(w.start, w.end) {
            let agent = e.project.as_deref().unwrap_or(UNATTRIBUTED_AGENT);
            if !TruthFilter::matches_opt(f.agent.as_ref(), Some(agent))
                || !TruthFilter::matches_opt(f.user.as_ref(), e.user.as_deref())
                || !TruthFilter::matches_opt(f.model.as_ref(), e.model.as_deref())
            {
                continue;
            }
            for (usage_type, unit, c) in e.contributions() {
                if !TruthFilter::matches_opt(f.usage_type.as_ref(), Some(usage_type)) {
                    continue;
                }
                let key = PointKey {
                    agent: Some(agent.to_owned()),
                    user: e.user.clone(),
                    conversation: None,
                    usage_type: Some(usage_type.to_owned()),
                    model: e.model.clone(),
                }
                .project(dims);
                out.entry((key, unit)).or_default().add(&c);
            }
        }
        out
    }
}
