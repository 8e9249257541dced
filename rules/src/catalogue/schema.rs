//! The catalogue's public schema: services, risk attributes, shared infrastructure.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Provenance, Risk};
use crate::pattern::is_at_or_below;

/// What kind of AI service this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Conversational assistants (ChatGPT, Claude, Gemini, companions).
    ChatAssistant,
    /// Model APIs and inference clouds.
    ModelApi,
    /// Coding assistants and AI IDEs.
    CodingAssistant,
    /// Image generation and editing.
    ImageGeneration,
    /// Video generation and avatars.
    VideoGeneration,
    /// Voice, speech, music.
    AudioGeneration,
    /// AI search and research engines.
    AiSearch,
    /// Agent builders and autonomous agents.
    AgentPlatform,
    /// Remote MCP (Model Context Protocol) servers.
    McpEndpoint,
    /// Model hubs and registries.
    ModelHub,
    /// Enterprise tenants on cloud AI platforms (Azure OpenAI, Bedrock, Vertex...).
    EnterpriseTenant,
    /// Self-hosted runtimes (Ollama, vLLM, ...), found by port and process.
    SelfHostedRuntime,
    /// Writing, paraphrasing, translation assistants.
    WritingAssistant,
    /// Meeting notes, documents, slides, browser assistants.
    ProductivityAi,
    /// LLM gateways, observability, vector databases.
    LlmOps,
    /// AI agents at work on a host (coding-agent sessions), known from the process hints of
    /// `_agents.toml` rather than from network names: no catalogue service has it.
    AiAgent,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 16] = [
        Self::ChatAssistant,
        Self::ModelApi,
        Self::CodingAssistant,
        Self::ImageGeneration,
        Self::VideoGeneration,
        Self::AudioGeneration,
        Self::AiSearch,
        Self::AgentPlatform,
        Self::McpEndpoint,
        Self::ModelHub,
        Self::EnterpriseTenant,
        Self::SelfHostedRuntime,
        Self::WritingAssistant,
        Self::ProductivityAi,
        Self::LlmOps,
        Self::AiAgent,
    ];

    /// The snake_case name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatAssistant => "chat_assistant",
            Self::ModelApi => "model_api",
            Self::CodingAssistant => "coding_assistant",
            Self::ImageGeneration => "image_generation",
            Self::VideoGeneration => "video_generation",
            Self::AudioGeneration => "audio_generation",
            Self::AiSearch => "ai_search",
            Self::AgentPlatform => "agent_platform",
            Self::McpEndpoint => "mcp_endpoint",
            Self::ModelHub => "model_hub",
            Self::EnterpriseTenant => "enterprise_tenant",
            Self::SelfHostedRuntime => "self_hosted_runtime",
            Self::WritingAssistant => "writing_assistant",
            Self::ProductivityAi => "productivity_ai",
            Self::LlmOps => "llm_ops",
            Self::AiAgent => "ai_agent",
        }
    }

    /// Parse the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Bit for set membership.
    pub(crate) fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hint on telling an enterprise tenant from personal use, as far as the network can.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantHint {
    /// When set: names below this suffix carry the tenant in their left-most label
    /// (e.g. `contoso.openai.azure.com` → tenant `contoso`). Policies can scope on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// What an analyst should know.
    pub note: String,
}

/// Inline tests: names (or `ip:`, `port:`, `process:` items) that must / must not match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Examples {
    /// Must be attributed to this service.
    #[serde(rename = "match")]
    pub matches: Vec<String>,
    /// Must not be attributed to this service.
    #[serde(default)]
    pub no_match: Vec<String>,
}

/// One AI service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Stable id (also the file name).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Company.
    pub vendor: String,
    /// Category.
    pub category: Category,
    /// One line on what it is.
    #[serde(default)]
    pub description: String,
    /// Label-boundary suffixes.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Exact host names.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Glob (SNI) patterns.
    #[serde(default)]
    pub sni: Vec<String>,
    /// Published address ranges.
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Default ports (self-hosted runtimes).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// True when a connection to one of `ports` alone identifies the service.
    #[serde(default)]
    pub port_alone: bool,
    /// Executable names / comms.
    #[serde(default)]
    pub process_hints: Vec<String>,
    /// Environment variables that hold this provider's API key in SDKs and LLM gateways
    /// (e.g. `OPENAI_API_KEY`); evidence for discovery, never read by the agent's matcher.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_key_env: Vec<String>,
    /// Risk attributes and score.
    pub risk: Risk,
    /// Enterprise-tenant hints.
    #[serde(default)]
    pub tenant_hints: Vec<TenantHint>,
    /// Provenance.
    pub provenance: Provenance,
    /// Inline examples.
    pub examples: Examples,
}

impl Service {
    /// The tenant label of `name` (normalised) if it lies below one of the tenant suffixes.
    pub fn tenant_of<'n>(&self, name: &'n str) -> Option<&'n str> {
        self.tenant_hints
            .iter()
            .filter_map(|h| h.suffix.as_deref())
            .find_map(|suffix| {
                if name.len() > suffix.len() && is_at_or_below(name, suffix) {
                    name.split('.').next()
                } else {
                    None
                }
            })
    }
}

/// What kind of shared infrastructure an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedKind {
    /// Content delivery network.
    Cdn,
    /// Generic cloud hosting / object storage / API front doors.
    Cloud,
    /// Telemetry, analytics, error reporting.
    Telemetry,
    /// Shared web hosting of many customers' sites.
    Hosting,
    /// Identity providers.
    Identity,
}

/// A host or suffix that many unrelated services share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedInfra {
    /// The suffix.
    pub suffix: String,
    /// Kind.
    pub kind: SharedKind,
    /// Whether a service may claim a specific name below it (e.g. a dedicated
    /// `bedrock-runtime.*.amazonaws.com`); never for telemetry.
    #[serde(default)]
    pub children_allowed: bool,
    /// Why it is listed.
    #[serde(default)]
    pub note: String,
}

/// The catalogue: services sorted by id, and the shared-infrastructure list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Services, sorted by id.
    pub services: Vec<Service>,
    /// Hosts no service may claim.
    pub shared_infra: Vec<SharedInfra>,
    /// Local DNS resolvers and caches (see [`Catalogue::is_local_resolver`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_resolvers: Vec<super::LocalResolver>,
    /// Process hints for the inventory of AI agents, MCP launchers and local runtimes
    /// (`_agents.toml`).
    #[serde(default, skip_serializing_if = "super::InventoryHints::is_empty")]
    pub inventory_hints: super::InventoryHints,
}
