//! The monitor protocol's results document (design.md section 6), the one
//! definition both sides use: the agent (`crate::agent`) serializes it, the
//! ingest API (`crate::web::ingest`) deserializes and then validates it.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/monitor/results`: one batch's results.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ResultsDocument {
    pub batch_id: i64,
    pub results: Vec<CheckResult>,
}

/// One check of one server. Absent optional fields read as null.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CheckResult {
    pub server: String,
    pub ts: i64,
    #[serde(default)]
    pub offset: Option<f64>,
    #[serde(default)]
    pub rtt: Option<f64>,
    #[serde(default)]
    pub stratum: Option<i64>,
    #[serde(default)]
    pub leap: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
}
