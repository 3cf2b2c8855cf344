// Package cluster holds what makes a set of abs processes one realm: the
// per-node config file, the canonical hash of its realm-wide section, and the
// TLS identities the nodes know each other by.
//
// # Config
//
// Load reads one node's YAML file: a cluster section identical on every node
// and a node section for this node only (see Config). Parsing is strict and
// reports every problem at once, each with file and line. Cluster.Hash is the
// hash that travels with every call (DESIGN.md §9): a mismatch means two nodes
// disagree on the realm and the call is refused. Sections owned by other
// packages are named to LoadWith and decoded with Config.DecodeSection, which
// is as strict.
//
// # Identities
//
// A realm has one CA (InitCA). Issue signs a certificate for a node: its
// name goes in the subject CN and its role (master, slave or operator) in an
// OU "abs-role:ROLE". LoadCredentials loads and checks a node's certs
// directory; ServerTLS and ClientTLS give mutual-TLS configurations in which a
// peer is trusted for chaining to the realm CA and known by its role and name,
// not its host name. A gRPC handler learns its caller with PeerIdentity and
// admits it by role with Authorize.
package cluster
