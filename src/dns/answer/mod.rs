//! What is answered: the UDP fast path, from record bytes encoded when Consul's data changed,
//! and the general path, where hickory-server's request handler reads the name, fills the
//! sections and writes them; names outside the domain go on to the fallback.

mod fast;
mod fast_query;
mod fast_reverse;
mod general;
mod handler;
mod locality;
mod name;
mod records;
mod response;
mod reverse_name;

pub(crate) use fast::FastPath;
pub(crate) use general::GeneralPath;
pub(crate) use handler::ConsulHandler;
pub(crate) use records::Zone;
