//! A zero-copy TCP relay with splice(2): bytes move socket → pipe → socket inside the kernel,
//! never through a user-space buffer. The userspace mode can use it instead of
//! `copy_bidirectional` (`--relay splice`); docs/BENCHMARKS.md has the comparison.

use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes moved per splice call; the pipe is grown to this size when the system allows.
const CHUNK: usize = 1 << 20;

fn flags() -> SpliceFlags {
    SpliceFlags::MOVE | SpliceFlags::NONBLOCK
}

/// Empty pipes kept for reuse: creating two pipes per connection made splice 20% slower than
/// copying on short connections.
static POOL: Mutex<Vec<(OwnedFd, OwnedFd)>> = Mutex::new(Vec::new());
const POOL_MAX: usize = 256;

fn take_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    if let Some(p) = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop() {
        return Ok(p);
    }
    let (rd, wr) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
    // A larger pipe means fewer wake-ups per megabyte; the default 64 KiB still works.
    let _ = fcntl_setpipe_size(&wr, CHUNK);
    Ok((rd, wr))
}

/// Returns a pipe known to be empty to the pool.
fn give_back(pipe: (OwnedFd, OwnedFd)) {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < POOL_MAX {
        pool.push(pipe);
    }
}

/// Moves `src` to `dst` until `src` reaches end of stream, then half-closes `dst`.
async fn one_way(src: &TcpStream, dst: &TcpStream) -> io::Result<u64> {
    // Dropped (not pooled) on any error, since it may still hold bytes.
    let pipe = take_pipe()?;
    let (pipe_rd, pipe_wr) = (&pipe.0, &pipe.1);
    let mut total = 0u64;
    loop {
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                Ok(splice(src, None, pipe_wr, None, CHUNK, flags())?)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // Pass the end of stream on, as copy_bidirectional does.
            let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
            give_back(pipe);
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                Ok(splice(pipe_rd, None, dst, None, left, flags())?)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}

/// Relays both directions until both have ended; returns the bytes moved each way.
pub async fn relay(a: &TcpStream, b: &TcpStream) -> io::Result<(u64, u64)> {
    tokio::try_join!(one_way(a, b), one_way(b, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn relays_both_ways_and_passes_end_of_stream() {
        // client <-> [a | relay | b] <-> echo server
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let relay_task = tokio::spawn(async move {
            let (a, _) = front.accept().await.unwrap();
            let b = TcpStream::connect(echo_addr).await.unwrap();
            relay(&a, &b).await.unwrap()
        });
        let mut client = TcpStream::connect(front_addr).await.unwrap();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (mut rd, mut wr) = client.split();
        let send = async {
            wr.write_all(&payload).await.unwrap();
            wr.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let recv = rd.read_to_end(&mut back);
        let (_, r) = tokio::join!(send, recv);
        r.unwrap();
        assert_eq!(back.len(), payload.len());
        assert!(back == payload, "bytes arrive intact and in order");
        let (up, down) = relay_task.await.unwrap();
        assert_eq!((up, down), (3_000_000, 3_000_000));
    }
}
