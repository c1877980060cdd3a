//! The bare HTTP/1.1 client of the load examples (web_bench, soak): one
//! keep-alive connection, GET only, so that the figures measure the server
//! and not a client library.

// Each example uses a part of it.
#![allow(dead_code)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// "http://127.0.0.1:8080/path" -> ("127.0.0.1:8080", "/path")
pub fn split_url(url: &str) -> Result<(String, String), BoxError> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((host.to_string(), path.to_string()))
}

/// The request line and headers of a GET on a kept-alive connection.
pub fn get_request(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// Reads one HTTP/1.1 response with Content-Length or chunked body into
/// `buf` (head and body); returns the status and where the body starts.
pub async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(u16, usize), BoxError> {
    buf.clear();
    let mut chunk = [0u8; 16384];
    let header_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12).ok_or("status")?.parse()?;
    if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        let len: usize = len.trim().parse()?;
        while buf.len() < header_end + len {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err("short body".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    } else {
        // Chunked: read until the terminating zero-length chunk.
        while !buf[header_end..].ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err("short chunked body".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    Ok((status, header_end))
}

/// One GET on a new connection (closed after it): the status and the
/// body as text.
pub async fn get(host: &str, path: &str) -> Result<(u16, String), BoxError> {
    let mut stream = TcpStream::connect(host).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let (status, body_start) = read_response(&mut stream, &mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
    let body = &buf[body_start..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A chunked body's data ("SIZE\r\nDATA\r\n" ... "0\r\n\r\n").
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, BoxError> {
    let mut data = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size without CRLF")?;
        let size_text = std::str::from_utf8(&body[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(data);
        }
        let chunk = body.get(..size).ok_or("chunk cut short")?;
        data.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or("chunk without CRLF")?;
    }
}
