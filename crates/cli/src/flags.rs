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
    /// Run the demonstration: two nodes on loopback with development certificates; reports
    /// submitted, delivered, receipted and received, a node restarted, the journals shown.
    Demo(DemoArgs),
    /// Make a node's configuration, certificates directory and data directory.
    Init(InitArgs),
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Submit a report for delivery; prints the record id on the last line once it is
    /// durable in the outbox.
    Submit(SubmitArgs),
    /// Records this node sends: list them, show one's delivery state.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Records this node received: list them (no content), show one (a journaled
    /// consultation that needs a justification).
    #[command(subcommand)]
    Inbox(InboxCommand),
    /// The node's peers, connections, queues and last errors.
    Status(ConfigArg),
    /// The receiving agency's feed: read a `stream` sink as JSON Lines and acknowledge what
    /// was taken; list and retry the records a sink set aside (dead letters).
    Feed(FeedArgs),
    /// Work with records offline: validate a report, seal it, open an envelope.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Manage certificates: make a development CA and node certificates.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// The audit journal (role dpo): verify its integrity, search it, export it. Every call
    /// is itself journaled with its justification.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// The Data Protection Officer's report (role dpo; journaled).
    #[command(subcommand)]
    Dpo(DpoCommand),
    /// Legal holds (role operator or dpo): a held record is restricted and never erased.
    #[command(subcommand)]
    Hold(crate::retention::HoldCommand),
    /// Review a record (role dpo or operator): keep it until the next review, or erase it.
    Review(crate::retention::ReviewArgs),
    /// Correct a record this node sent (role caseworker): the full corrected report goes to
    /// the recipient as a `rectification`; the original is erased here and there.
    Rectify(crate::retention::RectifyArgs),
    /// Retention (role operator or dpo): plan (what would be erased or restricted, and
    /// why; changes nothing) and sweep (erase what is due).
    #[command(subcommand)]
    Retention(crate::retention::RetentionCommand),
    /// Measure the exchange end to end (two nodes in this process, durable as in
    /// production) against this machine's signature and fdatasync limits.
    Bench(BenchArgs),
}

/// `pons bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// How many records to send (after one warm-up record, one per sender with
    /// `--scenario fan-in`).
    #[arg(long, default_value_t = 2000)]
    pub records: usize,
    /// How many clients submit at the same time (with `--scenario fan-in`, record k goes
    /// through sender k mod `--senders`).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Submit at this many records per second (open loop: record i is due at
    /// start + i/RATE, whatever the answers; at most `--concurrency` submits outstanding),
    /// and measure the latency from each record's due time. Without it, the clients submit
    /// as fast as the node answers (closed loop).
    #[arg(long, value_name = "RECORDS_PER_S")]
    pub rate: Option<f64>,
    /// About how many bytes each report has (its statements are padded).
    #[arg(long, value_name = "BYTES", default_value_t = 2048)]
    pub size: usize,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Make the temporary directory (certificates, both nodes' data) under DIR: the
    /// file system measured (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How many entries the journal measurement appends, then verifies.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub journal_entries: usize,
    /// Configure no sink on the receiving node (the exchange alone, for comparison).
    #[arg(long)]
    pub no_feed: bool,
    /// Run both nodes in this process (one async runtime, as `pons bench` did before
    /// 2026-12-03), not each in a `pons node run` process of its own as in production;
    /// the peak RSS is then both nodes' together.
    #[arg(long)]
    pub in_process: bool,
    /// Write each timed record's times to FILE as CSV (ms from the first submit: due,
    /// submit started, submit returned, receipt), to see when a tail happened.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Run the nodes with `[storage] sync = false`: the store's log written, no fdatasync
    /// (survives a process crash, not a power loss), to measure what fdatasync costs.
    #[arg(long)]
    pub no_sync: bool,
    /// What to measure: two nodes end to end with the machine's limits (default), one
    /// receiver fed by many senders (`fan-in`), or the retention sweep against the store's
    /// size (`sweep`).
    #[arg(long, value_enum, default_value_t = Scenario::TwoNodes)]
    pub scenario: Scenario,
    /// fan-in: how many sending nodes (each with its own certificates, store and endpoint).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub senders: usize,
    /// sweep: the store sizes to sweep, in inbox records, comma-separated.
    #[arg(
        long,
        value_name = "N,..",
        value_delimiter = ',',
        default_values_t = [10_000, 1_000_000]
    )]
    pub sweep_records: Vec<usize>,
    /// sweep: how many of the stored records are due for erasure, in every store.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub sweep_expiring: usize,
    /// sweep: spread the due records over the whole store instead of making the oldest due.
    #[arg(long)]
    pub sweep_scattered: bool,
}

/// `pons bench --scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Two nodes, the journal, the feed and the machine's limits.
    TwoNodes,
    /// One receiver, `--senders` senders, in this process.
    FanIn,
    /// The retention sweep at each of `--sweep-records` stored records.
    Sweep,
}

/// `pons feed`: reads when no subcommand is given.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FeedArgs {
    /// Acknowledge, list or retry dead letters instead of reading.
    #[command(subcommand)]
    pub command: Option<FeedCommand>,
    #[command(flatten)]
    pub read: FeedReadArgs,
}

/// `pons feed [--follow] [--from CURSOR] [--auto-ack]`.
#[derive(Debug, Args)]
pub struct FeedReadArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The `stream` sink to read (default: the node's only one).
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
    /// Keep reading as records arrive, until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// Start after this cursor instead of after the last acknowledged record.
    #[arg(long, value_name = "CURSOR")]
    pub from: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FeedFormat::Jsonl)]
    pub format: FeedFormat,
    /// Acknowledge each batch once it was written to standard output and flushed.
    #[arg(long)]
    pub auto_ack: bool,
    /// Records per read (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
}

/// Output formats of `pons feed`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FeedFormat {
    /// One feed record (JSON, see docs/integrating-a-feed.md) per line.
    Jsonl,
}

/// `pons feed …`.
#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Acknowledge every record of a `stream` sink up to CURSOR (each is journaled as
    /// handed over); repeating an acknowledgement is harmless.
    Ack(FeedAckArgs),
    /// Records the sinks set aside after their attempts ran out.
    DeadLetters(FeedDeadLettersArgs),
    /// Hand a dead letter over again (the sink's worker tries it next).
    Retry(FeedRetryArgs),
}

/// `pons feed ack`.
#[derive(Debug, Args)]
pub struct FeedAckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The `stream` sink (default: the node's only one).
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
    /// The `cursor` of the last record taken.
    pub cursor: u64,
}

/// `pons feed dead-letters`.
#[derive(Debug, Args)]
pub struct FeedDeadLettersArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only this sink's.
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// `pons feed retry`.
#[derive(Debug, Args)]
pub struct FeedRetryArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The sink (default: the one holding the record).
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
    /// The record id.
    pub id: String,
}

/// `pons demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep each node's configuration, certificates and data directory under
    /// `DIR/<node>/` for inspection, with the nodes stopped (the default is a temporary
    /// directory removed at the end).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// How many reports to submit.
    #[arg(long, default_value_t = 3)]
    pub reports: usize,
}

/// `--config`, shared by every command that talks to a node.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The node's configuration file.
    #[arg(
        long,
        value_name = "FILE",
        env = "PONS_CONFIG",
        default_value = "/etc/pons/node.toml"
    )]
    pub config: PathBuf,
}

/// `pons init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The node's id, e.g. `cuta`.
    #[arg(long, value_name = "ID")]
    pub node_id: String,
    /// The node's directory: `node.toml`, `certs/` and `data/` are made in it.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// A directory made by `pons pki dev-ca` (or laid out the same way by an agency PKI):
    /// `ca.pem`, `ca.crl.pem`, `pseudonym.key` and `<node-id>/{tls,sign}.{pem,key}` are
    /// copied into the node's `certs/`. Without it, a development federation with this
    /// node alone is made in `DIR/dev-federation` (DEV ONLY).
    #[arg(long, value_name = "DIR")]
    pub certs: Option<PathBuf>,
    /// The federation (SPIFFE trust domain).
    #[arg(long, default_value = "pons.example")]
    pub federation: String,
    /// The UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub listen: String,
    /// A peer, as `NODE=ADDRESS` (repeat for several).
    #[arg(long, value_name = "NODE=ADDRESS")]
    pub peer: Vec<String>,
    /// A class this node may send to a peer, as `NODE:CLASS` (repeat).
    #[arg(long, value_name = "NODE:CLASS")]
    pub send: Vec<String>,
    /// A class a peer may send to this node, as `NODE:CLASS` (repeat).
    #[arg(long, value_name = "NODE:CLASS")]
    pub receive: Vec<String>,
    /// OS users given every role (caseworker, dpo, operator); default: the user running
    /// `pons init`. Edit `[roles]` in `node.toml` to separate them.
    #[arg(long, value_delimiter = ',', value_name = "USERS")]
    pub users: Vec<String>,
    /// Replace an existing `node.toml` and certificates.
    #[arg(long)]
    pub force: bool,
}

/// `pons node …`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run the node daemon until SIGTERM or SIGINT; then drain and stop.
    Run(ConfigArg),
}

/// `pons submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The recipient node, e.g. `cuta`.
    #[arg(long, value_name = "NODE")]
    pub to: String,
    /// The record class, e.g. `minor-risk-report`.
    #[arg(long)]
    pub class: String,
    /// The report, as JSON (see config/examples/).
    #[arg(long, value_name = "REPORT.json")]
    pub file: PathBuf,
    /// Why the record is sent (overrides the report's `purpose`).
    #[arg(long)]
    pub purpose: Option<String>,
    /// Why this disclosure is necessary (overrides the report's `justification`).
    #[arg(long)]
    pub justification: Option<String>,
}

/// `pons outbox …`.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Every record in the outbox with its delivery state.
    List(ListArgs),
    /// One record's delivery state, attempts and verified receipt.
    Show(ShowArgs),
}

/// `pons inbox …`.
#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// Every received record: id, sender, class, subject pseudonym, time (no content).
    List(ListArgs),
    /// Show a received record: a consultation, journaled with its justification.
    Show(ConsultArgs),
}

/// Output formats of listings.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON object per line.
    Jsonl,
}

/// `… list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// `outbox show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The record id.
    pub id: String,
}

/// `inbox show`.
#[derive(Debug, Args)]
pub struct ConsultArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The record id.
    pub id: String,
    /// Why you consult this record (journaled; required by LED art. 25).
    #[arg(long)]
    pub justification: String,
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
    /// Export a received record from a running node, as its signed envelope or as JSON
    /// (journaled as an export, with its justification).
    Export(ExportArgs),
}

/// `pons record export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The record id.
    pub id: String,
    /// `cose`: the envelope exactly as signed; `json`: the verified record.
    #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
    pub format: ExportFormat,
    /// Why you export this record (journaled).
    #[arg(long)]
    pub justification: String,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// The tagged COSE_Sign1 envelope, binary.
    Cose,
    /// The verified record with its signer, as JSON.
    Json,
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

/// `pons journal …`.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Verify the hash chain, the stored head and the checkpoints; exit 3 naming the first
    /// bad entry. With `--export`, verify an exported file offline instead.
    Verify(JournalVerifyArgs),
    /// Search the journal (journaled as journal-read).
    Search(JournalSearchArgs),
    /// Export the journal to a file (journaled as export).
    Export(JournalExportArgs),
    /// Remove entries older than a date, back to the latest signed checkpoint before it,
    /// which stays as the anchor that keeps the rest verifiable (role operator or dpo;
    /// journaled as erase). The daemon does this by itself after `[journal] retention_days`.
    Prune(JournalPruneArgs),
}

/// `pons journal prune`.
#[derive(Debug, Args)]
pub struct JournalPruneArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Entries before this date (`YYYY-MM-DD`, UTC) or RFC 3339 time may be removed.
    #[arg(long, value_name = "DATE")]
    pub before: String,
    /// Why (journaled).
    #[arg(long)]
    pub justification: String,
}

/// `pons journal verify`.
#[derive(Debug, Args)]
pub struct JournalVerifyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Why you read the journal (journaled; required unless `--export` is given).
    #[arg(long)]
    pub justification: Option<String>,
    /// Verify this JSONL export offline (no node needed) instead of the node's journal.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// The node's record-signing certificate: checkpoint signatures in the export must
    /// verify with its key.
    #[arg(long, value_name = "CERT.pem", requires = "export")]
    pub cert: Option<PathBuf>,
    /// The federation CA certificate(s): the peers' countersignatures in the export must
    /// verify against it (and the node's checkpoints too).
    #[arg(long, value_name = "CA.pem", requires = "export")]
    pub ca: Option<PathBuf>,
    /// The federation (SPIFFE trust domain), with `--ca`.
    #[arg(long, default_value = "pons.example")]
    pub federation: String,
}

/// The filters of `journal search` and `journal export`.
#[derive(Debug, Args)]
pub struct JournalFilterArgs {
    /// A data subject: national register number, or `given names|family name|YYYY-MM-DD`;
    /// the node turns it into the subject pseudonym (the value itself is not kept).
    #[arg(long, value_name = "VALUE")]
    pub subject: Option<String>,
    /// A record id.
    #[arg(long, value_name = "ID")]
    pub record: Option<String>,
    /// A peer node (the counterpart of the entries).
    #[arg(long, value_name = "NODE")]
    pub peer: Option<String>,
    /// An actor (OS user name, or `system`).
    #[arg(long, value_name = "USER")]
    pub actor: Option<String>,
    /// An operation: collect, disclose, receive, consult, alter, combine, erase, restrict,
    /// review, reject, hold, journal-read, export.
    #[arg(long, value_name = "OP")]
    pub operation: Option<String>,
    /// From this date (`YYYY-MM-DD`, UTC) or RFC 3339 time, inclusive.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Until this date (the whole day included) or RFC 3339 time (exclusive).
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
}

/// `pons journal search`.
#[derive(Debug, Args)]
pub struct JournalSearchArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub filter: JournalFilterArgs,
    /// Why you read the journal (journaled).
    #[arg(long)]
    pub justification: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// Journal export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum JournalFormat {
    /// One JSON object per line: a header, the entries, the checkpoints
    /// (docs/journal-format.md); verifiable offline.
    Jsonl,
    /// One row per entry, for spreadsheets (not verifiable: use jsonl for that).
    Csv,
}

/// `pons journal export`.
#[derive(Debug, Args)]
pub struct JournalExportArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub filter: JournalFilterArgs,
    /// Why you export the journal (journaled).
    #[arg(long)]
    pub justification: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = JournalFormat::Jsonl)]
    pub format: JournalFormat,
    /// Where to write the export.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `pons dpo …`.
#[derive(Debug, Subcommand)]
pub enum DpoCommand {
    /// Write one self-contained HTML report (inline SVG charts, no external assets):
    /// exchanges per month per peer, rejections by reason, consultations by actor, and the
    /// verification status of the journal and its countersigned checkpoints.
    Report(DpoReportArgs),
}

/// `pons dpo report`.
#[derive(Debug, Args)]
pub struct DpoReportArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where to write the report.
    #[arg(long, value_name = "report.html")]
    pub out: PathBuf,
    /// From this date (`YYYY-MM-DD`) or RFC 3339 time.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Until this date (included) or RFC 3339 time.
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Why you read the journal (journaled).
    #[arg(long)]
    pub justification: String,
}
