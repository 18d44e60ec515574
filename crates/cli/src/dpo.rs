//! `pons dpo report`: one self-contained HTML file for the Data Protection Officer.
//!
//! The node computes the figures from its journal (and journals the read); this module
//! only renders them: no script, no network, no external asset — charts are inline SVG, so
//! the file can be archived and opened offline years later.

use std::fmt::Write as _;

use anyhow::Context;
use pons_node::control::Request;
use serde_json::Value;

use crate::client::call;
use crate::exit::Outcome;
use crate::flags::{DpoCommand, DpoReportArgs};

/// Runs a `pons dpo` command.
pub fn run(cmd: DpoCommand) -> Outcome {
    match cmd {
        DpoCommand::Report(args) => report(&args),
    }
}

fn report(args: &DpoReportArgs) -> Outcome {
    let body = call(
        &args.config,
        Request::DpoReport {
            since: args.since.clone(),
            until: args.until.clone(),
            justification: args.justification.clone(),
        },
    )?;
    let html = render(&body);
    std::fs::write(&args.out, html)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let ok = body["verification"]["ok"].as_bool() == Some(true);
    println!(
        "report written to {} ({} entries; journal {})",
        args.out.display(),
        body["entries"],
        if ok {
            "verified"
        } else {
            "FAILED verification"
        }
    );
    Ok(())
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const COLOURS: [&str; 6] = [
    "#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096",
];

/// A horizontal stacked bar chart as inline SVG: one row per label, one segment per series.
fn bar_chart(title: &str, series: &[&str], rows: &[(String, Vec<u64>)]) -> String {
    let mut out = format!("<section><h2>{}</h2>", esc(title));
    if rows.is_empty() {
        out.push_str("<p class=\"empty\">Nothing in this period.</p></section>");
        return out;
    }
    let max = rows
        .iter()
        .map(|(_, v)| v.iter().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let (label_w, bar_w, row_h) = (220.0, 460.0, 24.0);
    let height = row_h * rows.len() as f64 + 40.0;
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" role=\"img\" aria-label=\"{t}\">",
        w = label_w + bar_w + 80.0,
        t = esc(title)
    );
    for (i, (label, values)) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let _ = write!(
            out,
            "<text x=\"{x}\" y=\"{ty}\" text-anchor=\"end\" font-size=\"12\">{l}</text>",
            x = label_w - 8.0,
            ty = y + 14.0,
            l = esc(label)
        );
        let mut x = label_w;
        for (j, v) in values.iter().enumerate() {
            let w = *v as f64 / max as f64 * bar_w;
            if *v > 0 {
                let _ = write!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h}\" fill=\"{c}\"><title>{s}: {v}</title></rect>",
                    h = row_h - 6.0,
                    c = COLOURS[j % COLOURS.len()],
                    s = esc(series.get(j).copied().unwrap_or("")),
                );
            }
            x += w;
        }
        let _ = write!(
            out,
            "<text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"12\">{total}</text>",
            tx = x + 6.0,
            ty = y + 14.0,
            total = values.iter().sum::<u64>()
        );
    }
    let ly = rows.len() as f64 * row_h + 24.0;
    for (j, s) in series.iter().enumerate() {
        let lx = label_w + j as f64 * 130.0;
        let _ = write!(
            out,
            "<rect x=\"{lx}\" y=\"{ry}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{tx}\" y=\"{ly}\" font-size=\"12\">{s}</text>",
            ry = ly - 10.0,
            c = COLOURS[j % COLOURS.len()],
            tx = lx + 16.0,
            s = esc(s)
        );
    }
    out.push_str("</svg></section>");
    out
}

fn counts(v: &Value) -> Vec<(String, Vec<u64>)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), vec![n.as_u64().unwrap_or(0)]))
                .collect()
        })
        .unwrap_or_default()
}

/// Renders the report body (as the node answers it) as one HTML document.
pub fn render(body: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    };
    let node = text(&body["node"]);
    let mut exchanges = Vec::new();
    if let Some(months) = body["exchanges"].as_object() {
        for (month, peers) in months {
            if let Some(peers) = peers.as_object() {
                for (peer, v) in peers {
                    exchanges.push((
                        format!("{month}  {peer}"),
                        vec![
                            v["disclosed"].as_u64().unwrap_or(0),
                            v["received"].as_u64().unwrap_or(0),
                        ],
                    ));
                }
            }
        }
    }
    let ver = &body["verification"];
    let verified = ver["ok"].as_bool() == Some(true);
    let status = if verified {
        format!(
            "<div class=\"status ok\"><strong>Journal verified.</strong> {} entries, head <code>{}</code>; {} signed checkpoints and {} countersignatures by peers agree with it.</div>",
            text(&ver["entries"]),
            esc(&text(&ver["head_hash"])),
            text(&ver["checkpoints"]),
            text(&ver["cosigned"])
        )
    } else {
        format!(
            "<div class=\"status bad\"><strong>Journal verification FAILED:</strong> {}</div>",
            esc(&text(&ver["error"]))
        )
    };
    let mut ops = String::from("<table><tr><th>operation</th><th>entries</th></tr>");
    if let Some(m) = body["operations"].as_object() {
        for (op, n) in m {
            let _ = write!(ops, "<tr><td>{}</td><td>{}</td></tr>", esc(op), n);
        }
    }
    ops.push_str("</table>");
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Pons DPO report — {node}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #1a202c; max-width: 60em; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
.status {{ padding: .8em 1em; border-radius: 4px; }}
.ok {{ background: #c6f6d5; }} .bad {{ background: #fed7d7; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #cbd5e0; padding: .2em .6em; text-align: left; }}
.empty, .note {{ color: #4a5568; }}
</style></head>
<body>
<h1>Data protection report — node {node}</h1>
<p>Period: {since} to {until}. Generated {generated} from journal entries 1–{seq} ({entries} in the period). This read of the journal is itself journal entry {seq}.</p>
<h2>Integrity of the journal</h2>
{status}
{exchanges}
{rejections}
{consultations}
{reads}
<section><h2>Entries by operation</h2>{ops}</section>
<section><h2>Records overdue for review or erasure, open legal holds</h2>
{retention}</section>
<section><h2>Erasures in the period</h2>
{erasures}</section>
</body></html>
"#,
        node = esc(&node),
        retention = retention_table(&body["retention"]),
        erasures = erasure_table(&body["erasures"], &body["erasures_total"]),
        since = esc(&text(&body["since"])),
        until = esc(&text(&body["until"])),
        generated = esc(&text(&body["generated_at"])),
        seq = text(&body["journal_seq"]),
        entries = text(&body["entries"]),
        exchanges = bar_chart(
            "Exchanges per month per peer",
            &["disclosed (sent)", "received"],
            &exchanges
        ),
        rejections = bar_chart(
            "Rejections by reason",
            &["rejections"],
            &counts(&body["rejections"])
        ),
        consultations = bar_chart(
            "Consultations of records by actor",
            &["consultations"],
            &counts(&body["consultations"])
        ),
        reads = bar_chart(
            "Journal reads and exports by actor",
            &["journal reads and exports"],
            &counts(&body["journal_reads"])
        ),
    )
}

/// The erasures of records in the period: when, which record, on what ground; `refused`
/// rows are erasures a legal hold stopped (the record is kept restricted).
fn erasure_table(v: &Value, total: &Value) -> String {
    use crate::client::text;
    let rows = v.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "<p class=\"empty\">No record was erased in the period.</p>".to_owned();
    }
    let mut out = String::new();
    if total.as_u64().is_some_and(|t| t > rows.len() as u64) {
        let _ = write!(
            out,
            "<p class=\"note\">{} erasures; the first {} are listed (`pons journal search --operation erase --justification …` lists all).</p>",
            text(total),
            rows.len()
        );
    }
    out.push_str(
        "<table><tr><th>time</th><th>record</th><th>class</th><th>with</th><th>by</th><th>outcome</th><th>ground</th></tr>",
    );
    for r in &rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&r["time"])),
            esc(&text(&r["record_id"])),
            esc(&text(&r["class"])),
            esc(&text(&r["counterpart"])),
            esc(&text(&r["actor"])),
            esc(&text(&r["outcome"])),
            esc(&text(&r["ground"])),
        );
    }
    out.push_str("</table>");
    out
}

/// The records a retention rule restricts or makes due for erasure, and those held, as of
/// the report's date (not limited to the period: it is the state today).
fn retention_table(v: &Value) -> String {
    use crate::client::text;
    if let Some(err) = v["error"].as_str() {
        return format!(
            "<p class=\"note\">Retention state unavailable: {}</p>",
            esc(err)
        );
    }
    let rows = v.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "<p class=\"empty\">None today: no record is overdue for review or erasure, and no legal hold is open.</p>".to_owned();
    }
    let mut out = String::from(
        "<table><tr><th>record</th><th>where</th><th>class</th><th>with</th><th>review by</th><th>erase by</th><th>rule</th><th>legal holds</th></tr>",
    );
    for r in &rows {
        let holds: Vec<String> = r["holds"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|h| {
                format!(
                    "{} ({}, {})",
                    text(&h["reason"]),
                    text(&h["by"]),
                    text(&h["at"])
                )
            })
            .collect();
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&r["id"])),
            esc(&text(&r["place"])),
            esc(&text(&r["class"])),
            esc(&text(&r["counterpart"])),
            esc(&text(&r["review_by"])),
            esc(&text(&r["erase_by"])),
            esc(&text(&r["rule"])),
            esc(&if holds.is_empty() { "-".to_owned() } else { holds.join("; ") }),
        );
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_escapes_everything_and_has_no_external_reference() {
        let body = serde_json::json!({
            "node": "a<b",
            "entries": 3,
            "journal_seq": 4,
            "exchanges": { "2026-11": { "cuta": { "disclosed": 2, "received": 1 } } },
            "rejections": { "policy-denied": 1 },
            "consultations": { "<script>alert(1)</script>": 2 },
            "journal_reads": {},
            "operations": { "collect": 2 },
            "verification": { "ok": false, "error": "journal entry 3: hash does not match" },
        });
        let html = render(&body);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("node a&lt;b"));
        assert!(html.contains("Journal verification FAILED"));
        assert!(html.contains("2026-11  cuta"));
        // No external reference: the only URL is the SVG namespace name.
        let urls = html.matches("http://").count() + html.matches("https://").count();
        assert_eq!(
            urls,
            html.matches("http://www.w3.org/2000/svg").count(),
            "{html}"
        );
    }
}
