//! JSON-RPC framing errors, answered alike on both MCP transports, and the stdio plumbing that makes rmcp's stdio
//! transport answer them.
//!
//! rmcp drops a stdio line that is not JSON without a word (rust-sdk#938: replying could start an error storm
//! with a peer that echoes), and a line longer than its limit too, so a client waiting on that request would
//! hang; over HTTP the same bytes get a JSON-RPC error ([`crate::http`]). [`answer_malformed_lines`] sits between
//! the process's stdin / stdout and rmcp: it reads stdin line by line, answers a line that [`malformed`] refuses
//! itself (id null) and hands every other line to rmcp; rmcp's output and those answers reach stdout one whole
//! line at a time, so they never interleave. Only the gateway writes answers, never echoes input, so no storm.

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Longest stdio line passed on: rmcp's own limit (it would drop a longer one silently).
pub const MAX_LINE_BYTES: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;

/// In-memory pipe buffer between the stdio tasks and rmcp.
const PIPE_BYTES: usize = 64 << 10;

/// JSON-RPC parse error: the bytes are not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC invalid request: JSON, but not one request object (or too large to be read).
pub const INVALID_REQUEST: i64 = -32600;

/// What a message that rmcp would not answer gets: not JSON → -32700 (parse error); an array (a batch, which we do
/// not advertise: no 2025-03-26) or a non-object → -32600 (invalid request). `None`: a JSON object, for rmcp.
pub fn malformed(bytes: &[u8]) -> Option<(i64, String)> {
    let parsed = std::str::from_utf8(bytes)
        .map_err(|e| format!("the message is not UTF-8: {e}"))
        .and_then(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string()));
    if let Err(e) = parsed {
        return Some((PARSE_ERROR, format!("Parse error: {}", rvdb_core::error::clip(&e))));
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => None,
        Some(b'[') => Some((INVALID_REQUEST, "JSON-RPC batches are not supported".into())),
        _ => Some((INVALID_REQUEST, "Invalid Request: expected a JSON-RPC object".into())),
    }
}

/// A JSON-RPC error response without an id (the request's could not be read).
pub fn error_response(code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}})
}

/// Puts the answering of malformed lines between `input` / `output` (stdin / stdout) and rmcp: returns the
/// (reader, writer) pair to serve rmcp on, and the task writing `output`, which ends once rmcp has closed its
/// side and everything it wrote is flushed (await it before exiting).
pub fn answer_malformed_lines<R, W>(input: R, output: W) -> ((DuplexStream, DuplexStream), JoinHandle<()>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (rmcp_reads, to_rmcp) = tokio::io::duplex(PIPE_BYTES);
    let (rmcp_writes, from_rmcp) = tokio::io::duplex(PIPE_BYTES);
    let (answers, answered) = mpsc::channel(64);
    tokio::spawn(filter_input(BufReader::new(input), to_rmcp, answers));
    let writer = tokio::spawn(write_output(BufReader::new(from_rmcp), answered, output));
    ((rmcp_reads, rmcp_writes), writer)
}

enum Line {
    Whole,
    TooLong,
    Eof,
}

/// Reads one line (with its `\n`, if any) into `line`, never buffering more than [`MAX_LINE_BYTES`]: the rest of
/// a longer line is skipped.
async fn read_line(input: &mut (impl AsyncBufRead + Unpin), line: &mut Vec<u8>) -> std::io::Result<Line> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::Eof,
                (false, false) => Line::Whole,
            });
        }
        let newline = available.iter().position(|b| *b == b'\n');
        let take = newline.map_or(available.len(), |at| at + 1);
        if !too_long && line.len() + take > MAX_LINE_BYTES {
            too_long = true;
            line.clear();
        }
        if !too_long {
            line.extend_from_slice(&available[..take]);
        }
        input.consume(take);
        if newline.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Whole });
        }
    }
}

fn answer_line(code: i64, message: String) -> Vec<u8> {
    let mut line = error_response(code, message).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// stdin → rmcp, answering what rmcp would drop. Ends at EOF (closing rmcp's input, which ends the session).
async fn filter_input(mut input: impl AsyncBufRead + Unpin, mut to_rmcp: DuplexStream, answers: mpsc::Sender<Vec<u8>>) {
    let mut line = Vec::new();
    loop {
        let answer = match read_line(&mut input, &mut line).await {
            Ok(Line::Eof) => break,
            Err(e) => {
                tracing::warn!(error = %e, "reading stdin failed");
                break;
            }
            Ok(Line::TooLong) => Some((
                INVALID_REQUEST,
                format!("the message is longer than the limit of {MAX_LINE_BYTES} bytes per line"),
            )),
            Ok(Line::Whole) => {
                let mut text = line.strip_suffix(b"\n").unwrap_or(&line);
                text = text.strip_suffix(b"\r").unwrap_or(text);
                text = text.strip_prefix("\u{feff}".as_bytes()).unwrap_or(text);
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                malformed(text)
            }
        };
        match answer {
            Some((code, message)) => {
                tracing::debug!(code, %message, "answering a malformed stdio line");
                if answers.send(answer_line(code, message)).await.is_err() {
                    break;
                }
            }
            None => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n'); // the last line, cut by EOF: rmcp only takes terminated ones
                }
                if to_rmcp.write_all(&line).await.is_err() {
                    break; // rmcp has ended the session
                }
            }
        }
    }
}

/// rmcp's output and the answers → stdout, whole lines at a time. Ends when rmcp closes its output.
async fn write_output(
    mut from_rmcp: impl AsyncBufRead + Unpin,
    mut answered: mpsc::Receiver<Vec<u8>>,
    mut output: impl AsyncWrite + Unpin,
) {
    // `read_until` keeps what it read in `line` when the other branch wins, and resumes there. Biased to the
    // answers: an answer is queued before the lines after it reach rmcp, so when both are ready the answer was
    // first, and stdout keeps the order of stdin (a client reading replies in order sees them so).
    let mut line = Vec::new();
    loop {
        let whole = tokio::select! {
            biased;
            Some(answer) = answered.recv() => answer,
            read = from_rmcp.read_until(b'\n', &mut line) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) if !line.ends_with(b"\n") => break, // rmcp ended mid-line: nothing more will come
                Ok(_) => std::mem::take(&mut line),
            },
        };
        if output.write_all(&whole).await.is_err() || output.flush().await.is_err() {
            return; // the client is gone
        }
    }
    if !line.is_empty() {
        let _ = output.write_all(&line).await;
    }
    let _ = output.flush().await;
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[test]
    fn malformed_messages_get_the_codes_http_gives() {
        assert_eq!(malformed(br#"{"jsonrpc": "2.0", "id": 1, "method": "ping"}"#), None);
        assert_eq!(malformed(b"not json").map(|e| e.0), Some(PARSE_ERROR));
        assert_eq!(
            malformed(br#"{"jsonrpc": "2.0", "id": 1, "method": "ping"} trailing"#).map(|e| e.0),
            Some(PARSE_ERROR)
        );
        assert_eq!(malformed(b"{\"a\": \"\xff\"}").map(|e| e.0), Some(PARSE_ERROR));
        assert_eq!(malformed(b"[1]").map(|e| e.0), Some(INVALID_REQUEST));
        assert_eq!(malformed(b"42").map(|e| e.0), Some(INVALID_REQUEST));
        let long = format!("\"{}", "x".repeat(1 << 20));
        assert!(malformed(long.as_bytes()).is_some_and(|(_, m)| m.len() < 1000));
    }

    /// What rmcp would see and what the client would read, for `input`; rmcp is played by `reply`, which answers
    /// each line it gets with one line.
    async fn through(input: &'static [u8], reply: fn(&str) -> String) -> (Vec<String>, String) {
        let (client_stdin, server_stdin) = tokio::io::duplex(1 << 16);
        let (server_stdout, mut client_stdout) = tokio::io::duplex(1 << 16);
        let ((rmcp_in, mut rmcp_out), writer) = answer_malformed_lines(server_stdin, server_stdout);
        let rmcp = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut lines = BufReader::new(rmcp_in).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                rmcp_out.write_all(format!("{}\n", reply(&l)).as_bytes()).await.unwrap_or_default();
                seen.push(l);
            }
            seen
        });
        let mut client_stdin = client_stdin;
        client_stdin.write_all(input).await.unwrap_or_default();
        drop(client_stdin);
        let seen = rmcp.await.unwrap_or_default();
        writer.await.unwrap_or_default();
        let mut out = String::new();
        client_stdout.read_to_string(&mut out).await.unwrap_or_default();
        (seen, out)
    }

    #[tokio::test]
    async fn bad_lines_are_answered_and_good_ones_passed_on() {
        let input = b"garbage\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} x\n\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\r\n[]\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}";
        let (seen, out) = through(input, |_| r#"{"jsonrpc":"2.0","id":0,"result":{}}"#.to_string()).await;
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].contains(r#""id":2"#) && seen[1].contains(r#""id":3"#), "{seen:?}");
        let answers: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap_or_default()).collect();
        let codes: Vec<i64> = answers.iter().filter_map(|a| a["error"]["code"].as_i64()).collect();
        assert_eq!(codes, [PARSE_ERROR, PARSE_ERROR, INVALID_REQUEST], "{out}");
        assert!(answers.iter().filter(|a| a.get("error").is_some()).all(|a| a["id"].is_null()));
        assert_eq!(answers.iter().filter(|a| a.get("result").is_some()).count(), 2, "{out}");
    }
}
