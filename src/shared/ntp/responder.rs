//! The project's test NTP server: answers SNTP requests with a chosen clock
//! offset, a Kiss-o'-Death, or not at all. For tests and demos; it never
//! touches the machine's clock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

use super::packet::{HEADER_LEN, KissCode, MODE_CLIENT, MODE_SERVER, NtpTimestamp, Packet};

/// How the responder answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    /// A normal reply from a clock `offset` seconds ahead (negative: behind).
    Offset { offset: f64, stratum: u8 },
    /// A Kiss-o'-Death with this code.
    Kod(KissCode),
    /// No reply.
    Silent,
}

/// A running responder; stops when dropped or on `stop()`.
pub struct Responder {
    addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl Responder {
    /// Binds `addr` (port 0 for a free port) and starts answering.
    pub async fn start(addr: SocketAddr, behaviour: Behaviour) -> std::io::Result<Responder> {
        let socket = UdpSocket::bind(addr).await?;
        let addr = socket.local_addr()?;
        let behaviour = Arc::new(Mutex::new(behaviour));
        let task = tokio::spawn(serve(socket, behaviour.clone()));
        Ok(Responder {
            addr,
            behaviour,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how later requests are answered.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        // A poisoned lock only means a panic elsewhere; the value is plain data.
        let mut guard = self.behaviour.lock().unwrap_or_else(|e| e.into_inner());
        *guard = behaviour;
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, behaviour: Arc<Mutex<Behaviour>>) {
    let mut buf = [0u8; 1024];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            // ICMP errors from earlier replies; keep serving.
            Err(_) => continue,
        };
        let Ok(request) = Packet::decode(&buf[..len]) else {
            continue;
        };
        if request.mode != MODE_CLIENT {
            continue;
        }
        let current = *behaviour.lock().unwrap_or_else(|e| e.into_inner());
        let reply = match current {
            Behaviour::Silent => continue,
            Behaviour::Kod(code) => Packet {
                leap: 3,
                version: request.version,
                mode: MODE_SERVER,
                stratum: 0,
                refid: code.refid(),
                origin: request.transmit,
                ..Packet::default()
            },
            Behaviour::Offset { offset, stratum } => {
                let received = NtpTimestamp::now_shifted(offset);
                Packet {
                    leap: 0,
                    version: request.version,
                    mode: MODE_SERVER,
                    stratum,
                    poll: request.poll,
                    precision: -20,
                    root_delay: 0,
                    root_dispersion: 0,
                    refid: *b"TEST",
                    reference: received,
                    origin: request.transmit,
                    receive: received,
                    transmit: NtpTimestamp::now_shifted(offset),
                }
            }
        };
        let bytes: [u8; HEADER_LEN] = reply.encode();
        let _ = socket.send_to(&bytes, peer).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::ntp::client::{CheckConfig, CheckError, check};
    use std::time::Duration;

    fn fast() -> CheckConfig {
        CheckConfig {
            samples: 3,
            gap: Duration::from_millis(20),
            timeout: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn check_sees_the_offset_kod_and_silence() {
        let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let responder = Responder::start(
            local,
            Behaviour::Offset {
                offset: 0.2,
                stratum: 2,
            },
        )
        .await
        .expect("bind");
        let m = check(responder.local_addr(), &fast())
            .await
            .expect("measured");
        // SNTP's guarantee, not a speed: the true offset lies within half
        // the round trip of the measured one, and a reply came within the
        // timeout.
        assert!((m.offset - 0.2).abs() <= m.rtt / 2.0 + 0.001, "{m:?}");
        assert!(
            m.rtt >= 0.0 && m.rtt <= fast().timeout.as_secs_f64(),
            "{m:?}"
        );
        assert_eq!((m.stratum, m.leap), (2, 0));

        responder.set_behaviour(Behaviour::Offset {
            offset: -5.0,
            stratum: 12,
        });
        assert_eq!(
            check(responder.local_addr(), &fast()).await,
            Err(CheckError::StratumTooHigh(12))
        );
        for code in [KissCode::Rate, KissCode::Deny, KissCode::Rstr] {
            responder.set_behaviour(Behaviour::Kod(code));
            let err = check(responder.local_addr(), &fast())
                .await
                .expect_err("kod");
            assert_eq!(err, CheckError::Kod(code));
            assert_eq!(err.code(), format!("kod:{}", code.as_str()));
        }
        responder.set_behaviour(Behaviour::Silent);
        assert_eq!(
            check(responder.local_addr(), &fast()).await,
            Err(CheckError::NoResponse)
        );
        let addr = responder.local_addr();
        responder.stop();
        drop(responder);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(check(addr, &fast()).await, Err(CheckError::NoResponse));
    }
}
