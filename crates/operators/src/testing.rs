//! Conformance kit (in progress)
