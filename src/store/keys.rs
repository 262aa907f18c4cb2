//! Redis key names derived from a code (docs/contract.md).

/// The key names this service reads and writes, under a configurable prefix.
///
/// Every key derived from one code carries the code inside `{...}`, a Redis
/// Cluster hash tag, so the record and its used marker share a slot and one
/// `MULTI` can touch both.
#[derive(Debug, Clone)]
pub struct KeySpace {
    prefix: String,
}

impl KeySpace {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `<prefix>code:{<code>}`: the record the frontend writes.
    pub fn code(&self, code: &str) -> String {
        format!("{}code:{{{}}}", self.prefix, code)
    }

    /// `<prefix>used:{<code>}`: left by a successful redemption.
    pub fn used(&self, code: &str) -> String {
        format!("{}used:{{{}}}", self.prefix, code)
    }

    /// `<prefix>revoked-grant:{<grant_id>}`: what a resource server checks.
    /// Hash-tagged by the grant, like every key tied to one grant (next,
    /// its refresh-token family), so that all of them share a Cluster slot
    /// and one `MULTI` can revoke them together (docs/contract.md, "Keys
    /// tied to a grant").
    pub fn revoked_grant(&self, grant_id: &str) -> String {
        format!("{}revoked-grant:{{{}}}", self.prefix, grant_id)
    }

    /// `<prefix>dpop:<replay key>`: a DPoP proof accepted once
    /// ([`crate::dpop::ReplayClaim`]). Not hash-tagged: a proof is refused
    /// a second time whatever it is presented with, so its key belongs to
    /// no code or grant, and lands in a slot of its own.
    pub fn dpop_proof(&self, replay_key: &str) -> String {
        format!("{}dpop:{}", self.prefix, replay_key)
    }

    /// `<prefix>revoked-grant:<grant_id>`: the revocation key before it was
    /// hash-tagged, still written beside [`Self::revoked_grant`] so that
    /// resource servers that check it miss no revocation while they move to
    /// the new key.
    pub fn legacy_revoked_grant(&self, grant_id: &str) -> String {
        format!("{}revoked-grant:{}", self.prefix, grant_id)
    }
}

impl Default for KeySpace {
    fn default() -> Self {
        Self::new("oauth:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_share_the_hash_tag() {
        let keys = KeySpace::default();
        assert_eq!(keys.code("abc"), "oauth:code:{abc}");
        assert_eq!(keys.used("abc"), "oauth:used:{abc}");
        assert_eq!(keys.revoked_grant("g1"), "oauth:revoked-grant:{g1}");
        assert_eq!(keys.legacy_revoked_grant("g1"), "oauth:revoked-grant:g1");
        // Every key of one grant lands in the grant id's slot.
        let grant_id = "R4v2UnvCpQIPRlVfYxbB8A";
        assert_eq!(
            super::super::cluster_slot(keys.revoked_grant(grant_id).as_bytes()),
            super::super::cluster_slot(grant_id.as_bytes())
        );
    }
}
