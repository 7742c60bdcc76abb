//! Receives and sends UDP datagrams in batches (`recvmmsg` / `sendmmsg`), so that under load one
//! system call moves many queries and many answers, as fast DNS servers (NSD) do.
//!
//! The only unsafe code of the DNS side: the message headers point into buffers this struct
//! owns, and are rebuilt before every call, so no pointer outlives what it points to.

use std::{io, net::SocketAddr, os::fd::AsRawFd};

use socket2::{SockAddr, SockAddrStorage};

/// Datagrams taken per receive call.
pub const BATCH: usize = 32;

/// Buffers for up to [`BATCH`] received datagrams.
pub struct Inbox {
    buffer_size: usize,
    incoming: Vec<u8>,
    lengths: [usize; BATCH],
    sources: Vec<libc::sockaddr_storage>,
    source_lengths: [libc::socklen_t; BATCH],
    received: usize,
}

/// Answers waiting to be sent: bytes one after another, with each one's end and peer.
#[derive(Default)]
pub struct Outbox {
    outgoing: Vec<u8>,
    ends: Vec<usize>,
    peers: Vec<SockAddr>,
}

impl Inbox {
    pub fn new(buffer_size: usize) -> Self {
        Self {
            buffer_size,
            incoming: vec![0; buffer_size * BATCH],
            lengths: [0; BATCH],
            // SAFETY: all-zero bytes are a valid (unspecified) sockaddr_storage.
            sources: vec![unsafe { std::mem::zeroed() }; BATCH],
            source_lengths: [0; BATCH],
            received: 0,
        }
    }

    /// Blocks (up to the socket's read timeout) for at least one datagram and takes every one
    /// already queued, up to [`BATCH`]. Returns how many arrived.
    pub fn receive(&mut self, socket: &std::net::UdpSocket) -> io::Result<usize> {
        self.received = 0;
        let mut iovecs: Vec<libc::iovec> = self
            .incoming
            .chunks_mut(self.buffer_size)
            .map(|chunk| libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .zip(self.sources.iter_mut())
            .map(|(iov, source)| {
                // SAFETY: an all-zero msghdr is valid; the fields set below point into buffers
                // that live until after the call.
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_name = (source as *mut libc::sockaddr_storage).cast();
                header.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                header.msg_hdr.msg_iov = iov;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        // SAFETY: `headers` holds BATCH valid message headers whose buffers outlive the call.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                headers.len() as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            return Err(io::Error::last_os_error());
        }
        let count = (count as usize).min(BATCH);
        for (i, header) in headers.iter().take(count).enumerate() {
            self.lengths[i] = header.msg_len as usize;
            self.source_lengths[i] = header.msg_hdr.msg_namelen;
        }
        self.received = count;
        Ok(count)
    }

    /// Datagram `i` of the last receive and where it came from (`None` for a source that is
    /// not an IP address).
    pub fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.received {
            return None;
        }
        let start = i * self.buffer_size;
        let bytes = self
            .incoming
            .get(start..start + self.lengths[i].min(self.buffer_size))?;
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: sockaddr_storage is one of this platform's sockaddr types; the kernel filled
        // it and told its length, at most the storage's size.
        let source = unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.sources[i];
            SockAddr::new(storage, self.source_lengths[i])
        };
        Some((bytes, source.as_socket()?))
    }
}

impl Outbox {
    /// Queues `answer` for `peer`; sent by the next `flush`.
    pub fn queue(&mut self, answer: &[u8], peer: SocketAddr) {
        self.outgoing.extend_from_slice(answer);
        self.ends.push(self.outgoing.len());
        self.peers.push(SockAddr::from(peer));
    }

    /// Sends every queued answer; returns how many could not be sent.
    pub fn flush(&mut self, socket: &std::net::UdpSocket) -> usize {
        let mut failed = 0;
        let mut start = 0;
        let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(self.ends.len());
        for end in &self.ends {
            iovecs.push(libc::iovec {
                iov_base: self.outgoing[start..*end].as_ptr() as *mut libc::c_void,
                iov_len: end - start,
            });
            start = *end;
        }
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .zip(&self.peers)
            .map(|(iov, peer)| {
                // SAFETY: an all-zero msghdr is valid; the pointers set here live until after
                // the call and are only read by it.
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_name = peer.as_ptr() as *mut libc::c_void;
                header.msg_hdr.msg_namelen = peer.len();
                header.msg_hdr.msg_iov = iov;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        let mut sent = 0;
        while sent < headers.len() {
            let rest = &mut headers[sent..];
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
