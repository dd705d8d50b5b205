//! The CRI container runtime: runs pods' OCI containers through a CRI endpoint (containerd)
//! over gRPC.
