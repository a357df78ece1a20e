//! Status condition types of the Spotwright kinds.

/// NodeClaim: the EC2 instance exists.
pub const LAUNCHED: &str = "Launched";
/// NodeClaim: a Node with the claim's providerID joined the cluster.
pub const REGISTERED: &str = "Registered";
/// NodeClaim: the Node is Ready and its startup taints are gone.
pub const INITIALIZED: &str = "Initialized";
/// NodeClaim: the node no longer matches its NodePool or NodeClass.
pub const DRIFTED: &str = "Drifted";
/// NodeClaim: the node is being replaced or removed.
pub const DISRUPTING: &str = "Disrupting";
/// NodePool and NodeClass: the object is usable.
pub const READY: &str = "Ready";
