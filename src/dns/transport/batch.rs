//! Receives and sends UDP datagrams in batches (`recvmmsg` / `sendmmsg`), so that under load one
//! system call moves many queries and many answers, as fast DNS servers (NSD) do.
//!
//! The only unsafe code of the DNS side. The message headers point into heap buffers owned by
//! the same struct, which are allocated once and never resized, so the pointers stay valid for
//! the struct's life and no call allocates.

use std::{io, net::SocketAddr, os::fd::AsRawFd};

use socket2::{SockAddr, SockAddrStorage};

/// Datagrams taken per receive call.
pub(crate) const BATCH: usize = 32;

const STORAGE_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_storage>() as _;

/// Buffers for up to [`BATCH`] received datagrams.
pub(crate) struct Inbox {
    buffer_size: usize,
    /// `BATCH` buffers of `buffer_size` bytes, one after another.
    incoming: Vec<u8>,
    sources: Vec<libc::sockaddr_storage>,
    /// One per datagram, pointing into `incoming`; only held, for the headers that point to it.
    _iovecs: Vec<libc::iovec>,
    /// One per datagram, pointing into `sources` and `iovecs`; the kernel writes each datagram's
    /// length and source length into them.
    headers: Vec<libc::mmsghdr>,
    received: usize,
}

/// Answers waiting to be sent: bytes one after another, with each one's end and peer, and the
/// headers of one send call (kept for their capacity).
#[derive(Default)]
pub(crate) struct Outbox {
    outgoing: Vec<u8>,
    ends: Vec<usize>,
    peers: Vec<SockAddr>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl Inbox {
    pub(crate) fn new(buffer_size: usize) -> Self {
        let mut incoming = vec![0u8; buffer_size * BATCH];
        // SAFETY: all-zero bytes are a valid (unspecified) sockaddr_storage.
        let mut sources: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
        let mut iovecs: Vec<libc::iovec> = incoming
            .chunks_mut(buffer_size)
            .map(|chunk| libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            })
            .collect();
        let headers = iovecs
            .iter_mut()
            .zip(sources.iter_mut())
            .map(|(iov, source)| {
                // SAFETY: an all-zero msghdr is valid; the pointers set here go to heap buffers
                // that move with the struct and are never resized.
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_name = (source as *mut libc::sockaddr_storage).cast();
                header.msg_hdr.msg_namelen = STORAGE_LEN;
                header.msg_hdr.msg_iov = iov;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        Self {
            buffer_size,
            incoming,
            sources,
            _iovecs: iovecs,
            headers,
            received: 0,
        }
    }

    /// Blocks (up to the socket's read timeout) for at least one datagram and takes every one
    /// already queued, up to [`BATCH`]. Returns how many arrived.
    pub(crate) fn receive(&mut self, socket: &std::net::UdpSocket) -> io::Result<usize> {
        self.received = 0;
        // The kernel shortens each source length to the address it wrote; give back the room.
        for header in &mut self.headers {
            header.msg_hdr.msg_namelen = STORAGE_LEN;
        }
        // SAFETY: `headers` holds BATCH valid message headers whose buffers (`incoming`,
        // `sources`, `iovecs`) live as long as `self`.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = (count as usize).min(BATCH);
        Ok(self.received)
    }

    /// Datagram `i` of the last receive and where it came from (`None` for a source that is
    /// not an IP address).
    pub(crate) fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.received {
            return None;
        }
        let header = &self.headers[i];
        let start = i * self.buffer_size;
        let length = (header.msg_len as usize).min(self.buffer_size);
        let bytes = self.incoming.get(start..start + length)?;
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: sockaddr_storage is one of this platform's sockaddr types; the kernel filled
        // it and told its length, at most the storage's size.
        let source = unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.sources[i];
            SockAddr::new(storage, header.msg_hdr.msg_namelen.min(STORAGE_LEN))
        };
        Some((bytes, source.as_socket()?))
    }
}

impl Outbox {
    /// Queues `answer` for `peer`; sent by the next `flush`.
    pub(crate) fn queue(&mut self, answer: &[u8], peer: SocketAddr) {
        self.outgoing.extend_from_slice(answer);
        self.ends.push(self.outgoing.len());
        self.peers.push(SockAddr::from(peer));
    }

    /// Sends every queued answer; returns how many could not be sent.
    pub(crate) fn flush(&mut self, socket: &std::net::UdpSocket) -> usize {
        self.iovecs.clear();
        let mut start = 0;
        for end in &self.ends {
            self.iovecs.push(libc::iovec {
                iov_base: self.outgoing[start..*end].as_ptr() as *mut libc::c_void,
                iov_len: end - start,
            });
            start = *end;
        }
        self.headers.clear();
        for (iov, peer) in self.iovecs.iter_mut().zip(&self.peers) {
            // SAFETY: an all-zero msghdr is valid; the pointers set here live until after the
            // call and are only read by it.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_name = peer.as_ptr() as *mut libc::c_void;
            header.msg_hdr.msg_namelen = peer.len();
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
            self.headers.push(header);
        }
        let (mut sent, mut failed) = (0, 0);
        while sent < self.headers.len() {
            let rest = &mut self.headers[sent..];
            // SAFETY: `rest` holds valid headers whose buffers outlive the call.
            let count = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    rest.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    0,
                )
            };
            if count <= 0 {
                // Skip the answer the kernel refused (e.g. an unreachable peer) and go on.
                failed += 1;
                sent += 1;
            } else {
                sent += count as usize;
            }
        }
        self.outgoing.clear();
        self.ends.clear();
        self.peers.clear();
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_datagrams_arrive_in_one_batch_and_answers_go_back_together() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        for i in 0..5u8 {
            client
                .send_to(&[i; 3], server.local_addr().unwrap())
                .unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut inbox = Inbox::new(512);
        assert_eq!(inbox.receive(&server).unwrap(), 5);
        let mut outbox = Outbox::default();
        for i in 0..5 {
            let (bytes, peer) = inbox.datagram(i).unwrap();
            assert_eq!(bytes, [i as u8; 3]);
            assert_eq!(peer, client.local_addr().unwrap());
            outbox.queue(&[bytes[0], 0xAA], peer);
        }
        assert!(inbox.datagram(5).is_none());
        assert_eq!(outbox.flush(&server), 0);
        let mut buf = [0u8; 16];
        for i in 0..5u8 {
            let (len, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], [i, 0xAA]);
        }
    }
}
