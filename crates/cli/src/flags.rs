//! Raw command-line arguments, as clap parses them.
//!
//! Commands resolve these into what they need (files read, keys loaded) in their own
//! modules; nothing here touches the file system.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Pons: a secure gateway for exchanging sensitive unclassified records between agencies.
///
/// Records are validated, signed (COSE_Sign1), sent over mutually authenticated QUIC, kept
/// in durable outboxes and inboxes, answered by signed receipts and journaled.
///
/// Exit codes: 0 ok, 1 runtime failure, 2 usage or validation error, 3 integrity failure.
#[derive(Debug, Parser)]
#[command(name = "pons", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the demonstration: make a development federation, then seal, check and open a
    /// sample minor-risk report, step by step.
    Demo(DemoArgs),
    /// Work with records offline: validate a report, seal it, open an envelope.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Manage certificates: make a development CA and node certificates.
    #[command(subcommand)]
    Pki(PkiCommand),
}

/// `pons demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the federation's certificates and the sealed envelope in DIR for inspection
    /// (the default is a temporary directory removed at the end).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// `pons record …`.
#[derive(Debug, Subcommand)]
pub enum RecordCommand {
    /// Validate a report written as JSON; exit 2 listing every problem found.
    Check(CheckArgs),
    /// Validate a report and seal it into a signed COSE_Sign1 envelope.
    Seal(SealArgs),
    /// Open an envelope: verify its signature and certificate chain, print the record as
    /// JSON with the signer's node id; exit 3 when the signature or the chain fails.
    Open(OpenArgs),
}

/// `pons record check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The record class, e.g. `minor-risk-report` or `protection-file`.
    #[arg(long)]
    pub class: String,
    /// The report, as JSON (see config/examples/).
    #[arg(long, value_name = "REPORT.json")]
    pub file: PathBuf,
}

/// `pons record seal`.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// The record class.
    #[arg(long)]
    pub class: String,
    /// The report, as JSON.
    #[arg(long, value_name = "REPORT.json")]
    pub file: PathBuf,
    /// The node id of the recipient, e.g. `cuta`.
    #[arg(long, value_name = "NODE")]
    pub to: String,
    /// The signing key (PKCS#8 PEM, Ed25519 or ECDSA P-256; mode 0600).
    #[arg(long, value_name = "KEY.pem")]
    pub key: PathBuf,
    /// The signing certificate; its SPIFFE ID names the sending node.
    #[arg(long, value_name = "CERT.pem")]
    pub cert: PathBuf,
    /// Intermediate certificates to carry in the envelope after the signing certificate.
    #[arg(long, value_name = "CHAIN.pem")]
    pub chain: Option<PathBuf>,
    /// Why the record is sent (overrides the report's `purpose`).
    #[arg(long)]
    pub purpose: Option<String>,
    /// Why this disclosure is necessary (overrides the report's `justification`).
    #[arg(long)]
    pub justification: Option<String>,
    /// The federation's pseudonym key file (32 bytes or more, hex); without it, a
    /// development key is used and a warning printed.
    #[arg(long, value_name = "FILE")]
    pub pseudonym_key: Option<PathBuf>,
    /// Where to write the envelope.
    #[arg(long, value_name = "FILE.cose")]
    pub out: PathBuf,
}

/// `pons record open`.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The envelope (tagged COSE_Sign1).
    #[arg(long, value_name = "FILE.cose")]
    pub file: PathBuf,
    /// The federation CA certificate(s).
    #[arg(long, value_name = "CA.pem")]
    pub ca: PathBuf,
    /// A certificate revocation list from the CA.
    #[arg(long, value_name = "CRL.pem")]
    pub crl: Vec<PathBuf>,
    /// The federation (SPIFFE trust domain) the signer must belong to.
    #[arg(long, default_value = "pons.example")]
    pub federation: String,
}

/// `pons pki …`.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Make a development federation CA and, per node, a TLS and a signing certificate.
    /// DEVELOPMENT ONLY: the CA key is written next to the certificates.
    DevCa(DevCaArgs),
}

/// `pons pki dev-ca`.
#[derive(Debug, Args)]
pub struct DevCaArgs {
    /// The output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Comma-separated node ids, e.g. `adolescence,cuta,nccn`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// The federation (SPIFFE trust domain).
    #[arg(long, default_value = "pons.example")]
    pub federation: String,
    /// The key algorithm for every key made.
    #[arg(long, value_enum, default_value_t = KeyAlgorithm::Ed25519)]
    pub algorithm: KeyAlgorithm,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

/// Key algorithms `pons pki` can make.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyAlgorithm {
    /// Ed25519 (COSE EdDSA).
    Ed25519,
    /// ECDSA P-256 (COSE ES256).
    P256,
}
