//! Every nsqd flag and `--config` (being written).
