//! The XDP program, written as BPF instructions here rather than compiled
//! from C: about fifty instructions do not justify clang or bpf-linker in
//! the build (libbpf once shipped its default AF_XDP program this way).
//!
//! It redirects to the queue's AF_XDP socket exactly the UDP datagrams
//! addressed to one of the daemon's listen addresses and its port, IPv4
//! without options and not fragmented, IPv6 whose next header is UDP;
//! everything else (ARP, NDP, TCP, other ports, fragments, extension
//! headers, anything too short to hold its headers) goes on to the
//! kernel, where the daemon's sockets and the system serve it. The
//! program reads only what its bounds check allows (the verifier refuses
//! it otherwise); the full check of a redirected frame is `frame::parse`.

use std::net::IpAddr;

/// One BPF instruction as the kernel takes it (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Instruction {
    code: u8,
    /// Destination register in the low nibble, source in the high.
    registers: u8,
    offset: i16,
    immediate: i32,
}

// Instruction classes, sizes, modes and operations (linux/bpf_common.h,
// linux/bpf.h).
const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_JMP: u8 = 0x05;
const CLASS_JMP32: u8 = 0x06;
const CLASS_ALU64: u8 = 0x07;
const SIZE_W: u8 = 0x00;
const SIZE_H: u8 = 0x08;
const SIZE_B: u8 = 0x10;
const SIZE_DW: u8 = 0x18;
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const SOURCE_K: u8 = 0x00;
const SOURCE_X: u8 = 0x08;
const OP_ADD: u8 = 0x00;
const OP_AND: u8 = 0x50;
const OP_MOV: u8 = 0xb0;
const JUMP_ALWAYS: u8 = 0x00;
const JUMP_EQ: u8 = 0x10;
const JUMP_GT: u8 = 0x20;
const JUMP_NE: u8 = 0x50;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
/// `src_reg` of a 64-bit immediate load that names a map by its fd.
const PSEUDO_MAP_FD: u8 = 1;
const HELPER_REDIRECT_MAP: i32 = 51;

/// XDP actions (enum xdp_action).
pub const XDP_ABORTED: i32 = 0;
pub const XDP_DROP: i32 = 1;
pub const XDP_PASS: i32 = 2;
pub const XDP_REDIRECT: i32 = 4;

// struct xdp_md: the context's fields the program reads.
const CONTEXT_DATA: i16 = 0;
const CONTEXT_DATA_END: i16 = 4;
const CONTEXT_RX_QUEUE: i16 = 16;

// Offsets in the frame.
const ETHERTYPE: i16 = 12;
const IPV4: i16 = 14;
const IPV6: i16 = 14;
const IPV4_UDP: i16 = IPV4 + 20;
const IPV6_UDP: i16 = IPV6 + 40;
const UDP_HEADER: i32 = 8;

// Registers: r1-r5 are arguments and scratch, r6 keeps the context, r0
// the result.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;

/// A 16-bit field in network order as a load from memory sees it.
fn wire_u16(value: u16) -> i32 {
    i32::from(u16::from_ne_bytes(value.to_be_bytes()))
}

/// Four bytes in order as a 32-bit load sees them (compared in 32 bits).
fn wire_u32(bytes: [u8; 4]) -> i32 {
    u32::from_ne_bytes(bytes) as i32
}

/// What the program serves: the port and the addresses (none of a family:
/// that family is not redirected; an unspecified address: every address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub port: u16,
    pub addresses: Vec<IpAddr>,
    /// The action for a datagram of ours on a queue without a socket:
    /// XDP_PASS in service (the kernel's sockets answer it); tests use
    /// XDP_DROP to tell a redirect from a pass without a socket.
    pub without_socket: i32,
}

/// Jump targets, resolved when the program is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    Pass,
    Redirect,
    Ipv4,
    Ipv6,
    /// The next address's comparison (index of the address).
    NextAddress(usize),
}

struct Assembler {
    code: Vec<Instruction>,
    /// Instructions whose offset is a jump to a label.
    jumps: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Assembler {
    fn emit(&mut self, code: u8, dst: u8, src: u8, offset: i16, immediate: i32) {
        self.code.push(Instruction {
            code,
            registers: dst | (src << 4),
            offset,
            immediate,
        });
    }

    fn label(&mut self, label: Label) {
        self.labels.push((label, self.code.len()));
    }

    /// A jump to `label` (offset filled in by `finish`).
    fn jump(&mut self, code: u8, dst: u8, immediate: i32, label: Label) {
        self.jumps.push((self.code.len(), label));
        self.emit(code, dst, 0, 0, immediate);
    }

    fn load(&mut self, size: u8, dst: u8, src: u8, offset: i16) {
        self.emit(CLASS_LDX | size | MODE_MEM, dst, src, offset, 0);
    }

    /// Pass unless the frame holds `len` bytes: r4 = data + len; r4 > end.
    fn need(&mut self, len: i32) {
        self.emit(CLASS_ALU64 | OP_MOV | SOURCE_X, R4, R2, 0, 0);
        self.emit(CLASS_ALU64 | OP_ADD | SOURCE_K, R4, 0, 0, len);
        self.jumps.push((self.code.len(), Label::Pass));
        self.emit(CLASS_JMP | JUMP_GT | SOURCE_X, R4, R3, 0, 0);
    }

    fn finish(mut self) -> Vec<Instruction> {
        for (at, label) in &self.jumps {
            let target = self
                .labels
                .iter()
                .find(|(name, _)| name == label)
                .map(|(_, at)| *at)
                .unwrap_or_else(|| panic!("program label {label:?} not placed"));
            // Relative to the instruction after the jump.
            self.code[*at].offset = (target as i64 - *at as i64 - 1) as i16;
        }
        self.code
    }
}

/// The program for `filter`, redirecting through the XSKMAP `map_fd`.
pub fn assemble(filter: &Filter, map_fd: i32) -> Vec<Instruction> {
    let mut asm = Assembler {
        code: Vec::new(),
        jumps: Vec::new(),
        labels: Vec::new(),
    };
    let v4: Vec<[u8; 4]> = filter
        .addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v4) => Some(v4.octets()),
            IpAddr::V6(_) => None,
        })
        .collect();
    let v6: Vec<[u8; 16]> = filter
        .addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(v6) => Some(v6.octets()),
            IpAddr::V4(_) => None,
        })
        .collect();
    let port = wire_u16(filter.port);

    asm.emit(CLASS_ALU64 | OP_MOV | SOURCE_X, R6, R1, 0, 0);
    asm.load(SIZE_W, R2, R1, CONTEXT_DATA);
    asm.load(SIZE_W, R3, R1, CONTEXT_DATA_END);
    asm.need(i32::from(IPV4));
    asm.load(SIZE_H, R5, R2, ETHERTYPE);
    if !v4.is_empty() {
        asm.jump(
            CLASS_JMP32 | JUMP_EQ | SOURCE_K,
            R5,
            wire_u16(0x0800),
            Label::Ipv4,
        );
    }
    if !v6.is_empty() {
        asm.jump(
            CLASS_JMP32 | JUMP_EQ | SOURCE_K,
            R5,
            wire_u16(0x86dd),
            Label::Ipv6,
        );
    }
    asm.jump(CLASS_JMP | JUMP_ALWAYS, 0, 0, Label::Pass);

    if !v4.is_empty() {
        asm.label(Label::Ipv4);
        asm.need(i32::from(IPV4_UDP) + UDP_HEADER);
        // Version 4, header of 20 bytes (no options).
        asm.load(SIZE_B, R5, R2, IPV4);
        asm.jump(CLASS_JMP32 | JUMP_NE | SOURCE_K, R5, 0x45, Label::Pass);
        asm.load(SIZE_B, R5, R2, IPV4 + 9);
        asm.jump(CLASS_JMP32 | JUMP_NE | SOURCE_K, R5, 17, Label::Pass);
        // Not a fragment: MF and the offset clear (DF may be set).
        asm.load(SIZE_H, R5, R2, IPV4 + 6);
        asm.emit(CLASS_ALU64 | OP_AND | SOURCE_K, R5, 0, 0, wire_u16(0x3fff));
        asm.jump(CLASS_JMP32 | JUMP_NE | SOURCE_K, R5, 0, Label::Pass);
        asm.load(SIZE_H, R5, R2, IPV4_UDP + 2);
        asm.jump(CLASS_JMP32 | JUMP_NE | SOURCE_K, R5, port, Label::Pass);
        if v4.contains(&[0; 4]) {
            asm.jump(CLASS_JMP | JUMP_ALWAYS, 0, 0, Label::Redirect);
        } else {
            asm.load(SIZE_W, R5, R2, IPV4 + 16);
            for address in &v4 {
                asm.jump(
                    CLASS_JMP32 | JUMP_EQ | SOURCE_K,
                    R5,
                    wire_u32(*address),
                    Label::Redirect,
                );
            }
            asm.jump(CLASS_JMP | JUMP_ALWAYS, 0, 0, Label::Pass);
        }
    }

    if !v6.is_empty() {
        asm.label(Label::Ipv6);
        asm.need(i32::from(IPV6_UDP) + UDP_HEADER);
        // Version 6 (the high nibble), next header UDP.
        asm.load(SIZE_B, R5, R2, IPV6);
        asm.emit(CLASS_ALU64 | OP_AND | SOURCE_K, R5, 0, 0, 0xf0);
        asm.jump(CLASS_JMP32 | JUMP_NE | SOURCE_K, R5, 0x60, Label::Pass);
        asm.load(SIZE_B, R5, R2, IPV6 + 6);
        asm.jump(CLASS_JMP32 | JUMP_NE | SOURCE_K, R5, 17, Label::Pass);
        asm.load(SIZE_H, R5, R2, IPV6_UDP + 2);
        asm.jump(CLASS_JMP32 | JUMP_NE | SOURCE_K, R5, port, Label::Pass);
        if v6.contains(&[0; 16]) {
            asm.jump(CLASS_JMP | JUMP_ALWAYS, 0, 0, Label::Redirect);
        } else {
            for (index, address) in v6.iter().enumerate() {
                // Four 32-bit words of the destination; the first that
                // differs goes on to the next address.
                for word in 0..4 {
                    let bytes: [u8; 4] = address[word * 4..word * 4 + 4]
                        .try_into()
                        .expect("four bytes");
                    asm.load(SIZE_W, R5, R2, IPV6 + 24 + (word as i16) * 4);
                    asm.jump(
                        CLASS_JMP32 | JUMP_NE | SOURCE_K,
                        R5,
                        wire_u32(bytes),
                        Label::NextAddress(index),
                    );
                }
                asm.jump(CLASS_JMP | JUMP_ALWAYS, 0, 0, Label::Redirect);
                asm.label(Label::NextAddress(index));
            }
            asm.jump(CLASS_JMP | JUMP_ALWAYS, 0, 0, Label::Pass);
        }
    }

    asm.label(Label::Redirect);
    // bpf_redirect_map(map, rx_queue_index, action without a socket).
    asm.emit(CLASS_LD | SIZE_DW | MODE_IMM, R1, PSEUDO_MAP_FD, 0, map_fd);
    asm.emit(0, 0, 0, 0, 0);
    asm.load(SIZE_W, R2, R6, CONTEXT_RX_QUEUE);
    asm.emit(
        CLASS_ALU64 | OP_MOV | SOURCE_K,
        R3,
        0,
        0,
        filter.without_socket,
    );
    asm.emit(CLASS_JMP | CALL, 0, 0, 0, HELPER_REDIRECT_MAP);
    asm.emit(CLASS_JMP | EXIT, 0, 0, 0, 0);

    asm.label(Label::Pass);
    asm.emit(CLASS_ALU64 | OP_MOV | SOURCE_K, R0, 0, 0, XDP_PASS);
    asm.emit(CLASS_JMP | EXIT, 0, 0, 0, 0);
    asm.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program() {
        let filter = Filter {
            port: 53,
            addresses: vec![
                "198.18.0.1".parse().unwrap(),
                "198.18.0.200".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            ],
            without_socket: XDP_PASS,
        };
        let program = assemble(&filter, 3);
        for (at, instruction) in program.iter().enumerate() {
            let class = instruction.code & 0x07;
            let op = instruction.code & 0xf0;
            if (class == CLASS_JMP || class == CLASS_JMP32) && op != CALL && op != EXIT {
                let target = at as i64 + 1 + i64::from(instruction.offset);
                assert!(
                    target > at as i64 && (target as usize) < program.len(),
                    "jump at {at} to {target}"
                );
            }
        }
        assert_eq!(program.last().map(|i| i.code), Some(CLASS_JMP | EXIT));
    }
}
