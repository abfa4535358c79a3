//! End-to-end tests of the recpipe binary and library live in tests/.
