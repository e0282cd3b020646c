//! TestServer on 127.0.0.1:0, etcd launcher, wait helpers.
