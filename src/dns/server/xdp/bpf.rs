//! The bpf(2) calls of the XDP path, made directly: creating the XSKMAP,
//! loading the program (with the verifier's log on refusal), attaching it
//! to an interface through a BPF link (which detaches it when the daemon's
//! descriptor closes, however the daemon ends), and running it on a frame
//! in tests. `libc` has the syscall number but not `union bpf_attr`; each
//! command's fields are written at their offsets in linux/bpf.h into a
//! zeroed buffer, the way the kernel reads them.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::program::Instruction;

const MAP_CREATE: libc::c_int = 0;
const MAP_UPDATE_ELEM: libc::c_int = 2;
const PROG_LOAD: libc::c_int = 5;
const PROG_TEST_RUN: libc::c_int = 10;
const LINK_CREATE: libc::c_int = 28;

const MAP_TYPE_XSKMAP: u32 = 17;
const PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: BPF_XDP.
const ATTACH_XDP: u32 = 37;
/// XDP_FLAGS_SKB_MODE (generic) and XDP_FLAGS_DRV_MODE (native).
pub const XDP_FLAGS_SKB_MODE: u32 = 2;
pub const XDP_FLAGS_DRV_MODE: u32 = 4;

/// The size of `union bpf_attr` this code writes (the kernel accepts a
/// smaller one than its own if the rest would be zero).
const ATTR_SIZE: usize = 128;

/// A zeroed `union bpf_attr` with fields written at their offsets.
struct Attr([u8; ATTR_SIZE]);

impl Attr {
    fn new() -> Attr {
        Attr([0; ATTR_SIZE])
    }

    fn u32(&mut self, at: usize, value: u32) -> &mut Attr {
        self.0[at..at + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn u64(&mut self, at: usize, value: u64) -> &mut Attr {
        self.0[at..at + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn read_u32(&self, at: usize) -> u32 {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&self.0[at..at + 4]);
        u32::from_ne_bytes(bytes)
    }

    fn name(&mut self, at: usize, name: &str) -> &mut Attr {
        // BPF_OBJ_NAME_LEN is 16 with the terminating zero.
        let bytes = name.as_bytes();
        let len = bytes.len().min(15);
        self.0[at..at + len].copy_from_slice(&bytes[..len]);
        self
    }

    /// bpf(cmd, self): the result (an fd for the creating commands).
    fn call(&mut self, command: libc::c_int) -> io::Result<libc::c_long> {
        // SAFETY: the attribute buffer is ATTR_SIZE bytes, lives across
        // the call, and every pointer written into it points to memory
        // that also outlives the call (the callers keep it borrowed).
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                command,
                self.0.as_mut_ptr(),
                ATTR_SIZE as libc::c_uint,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(result)
    }

    fn call_for_fd(&mut self, command: libc::c_int) -> io::Result<OwnedFd> {
        let fd = self.call(command)?;
        let fd = libc::c_int::try_from(fd)
            .map_err(|_| io::Error::other(format!("bpf returned {fd} as a descriptor")))?;
        // SAFETY: the kernel just returned this descriptor to us; nothing
        // else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// An XSKMAP of `entries` slots (one per queue), named for `bpftool`.
pub fn create_socket_map(entries: u32) -> io::Result<OwnedFd> {
    Attr::new()
        .u32(0, MAP_TYPE_XSKMAP)
        .u32(4, 4) // key: the queue index
        .u32(8, 4) // value: the AF_XDP socket's fd
        .u32(12, entries)
        .name(28, "timepool_xsks")
        .call_for_fd(MAP_CREATE)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create the XSKMAP: {e}")))
}

/// Put the AF_XDP socket `socket` in slot `queue` of the map.
pub fn set_socket(map: &OwnedFd, queue: u32, socket: libc::c_int) -> io::Result<()> {
    let key = queue;
    let value = socket as u32;
    Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, &key as *const u32 as u64)
        .u64(16, &value as *const u32 as u64)
        .call(MAP_UPDATE_ELEM)
        .map(drop)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot put the socket of queue {queue} in the XSKMAP: {e}"),
            )
        })
}

/// Load an XDP program. A refusal carries the verifier's log.
pub fn load_program(program: &[Instruction]) -> io::Result<OwnedFd> {
    // The program uses no GPL-only helper; the string only says how these
    // instructions may be shared.
    let license = CString::new("Dual MIT/GPL").expect("no NUL");
    let load = |log: Option<&mut [u8]>| {
        let mut attr = Attr::new();
        attr.u32(0, PROG_TYPE_XDP)
            .u32(4, program.len() as u32)
            .u64(8, program.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .name(48, "timepool_dns")
            .u32(68, ATTACH_XDP); // expected_attach_type
        if let Some(log) = log {
            attr.u32(24, 1) // log_level
                .u32(28, log.len() as u32)
                .u64(32, log.as_mut_ptr() as u64);
        }
        attr.call_for_fd(PROG_LOAD)
    };
    match load(None) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; 1 << 16];
            let again = load(Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            match again {
                Ok(fd) => Ok(fd),
                Err(_) => Err(io::Error::new(
                    first.kind(),
                    format!("the kernel refused the XDP program: {first}; verifier log:\n{text}"),
                )),
            }
        }
    }
}

/// Attach `program` to the interface `ifindex` in the mode `flags`
/// (XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE). The program stays attached
/// while the returned link is open.
pub fn attach(program: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    Attr::new()
        .u32(0, program.as_raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, ATTACH_XDP)
        .u32(12, flags)
        .call_for_fd(LINK_CREATE)
}

/// Run `program` once on `frame` (no interface, queue 0) and return its
/// action: how the tests see what it decides.
pub fn test_run(program: &OwnedFd, frame: &[u8]) -> io::Result<u32> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = Attr::new();
    attr.u32(0, program.as_raw_fd() as u32)
        .u32(8, frame.len() as u32)
        .u32(12, out.len() as u32)
        .u64(16, frame.as_ptr() as u64)
        .u64(24, out.as_mut_ptr() as u64)
        .u32(32, 1);
    attr.call(PROG_TEST_RUN)?;
    Ok(attr.read_u32(4))
}
