-- 0001: accounts, devices, prekeys and the per-device message queue.
--
-- The same shape as the SQLite store's schema, in types PostgreSQL and the
-- PostgreSQL-compatible distributed databases share: TEXT, BYTEA, BIGINT
-- (uint32 ids do not fit INTEGER), and times as unix milliseconds. Keys,
-- signatures, device lists and message contents are opaque bytes: the
-- server never interprets them beyond what the handlers verify.

CREATE TABLE accounts (
	username            TEXT   NOT NULL PRIMARY KEY,
	account_key         BYTEA  NOT NULL,
	device_list         BYTEA  NOT NULL,
	device_list_version BIGINT NOT NULL,
	created_ms          BIGINT NOT NULL
);

-- last_seq is the highest message seq ever stored for the device (0 for
-- none). Enqueue locks the device's row before taking seqs and checks
-- every new seq is above it; see messages.go for why that matters.
CREATE TABLE devices (
	username     TEXT   NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
	device_id    BIGINT NOT NULL,
	signing_key  BYTEA  NOT NULL,
	identity_key BYTEA  NOT NULL,
	created_ms   BIGINT NOT NULL,
	last_seen_ms BIGINT NOT NULL,
	last_seq     BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (username, device_id)
);

-- One current signed X25519 prekey per device, replaced on rotation.
CREATE TABLE signed_prekeys (
	username  TEXT   NOT NULL,
	device_id BIGINT NOT NULL,
	key_id    BIGINT NOT NULL,
	key       BYTEA  NOT NULL,
	signature BYTEA  NOT NULL,
	PRIMARY KEY (username, device_id),
	FOREIGN KEY (username, device_id) REFERENCES devices (username, device_id) ON DELETE CASCADE
);

-- One last-resort ML-KEM prekey per device, handed out (and kept) when no
-- one-time KEM key remains.
CREATE TABLE kem_last_resort_prekeys (
	username  TEXT   NOT NULL,
	device_id BIGINT NOT NULL,
	key_id    BIGINT NOT NULL,
	key       BYTEA  NOT NULL,
	signature BYTEA  NOT NULL,
	PRIMARY KEY (username, device_id),
	FOREIGN KEY (username, device_id) REFERENCES devices (username, device_id) ON DELETE CASCADE
);

-- One-time keys are deleted as they are handed out, so each goes to at
-- most one requester.
CREATE TABLE one_time_prekeys (
	username  TEXT   NOT NULL,
	device_id BIGINT NOT NULL,
	key_id    BIGINT NOT NULL,
	key       BYTEA  NOT NULL,
	PRIMARY KEY (username, device_id, key_id),
	FOREIGN KEY (username, device_id) REFERENCES devices (username, device_id) ON DELETE CASCADE
);

CREATE TABLE kem_one_time_prekeys (
	username  TEXT   NOT NULL,
	device_id BIGINT NOT NULL,
	key_id    BIGINT NOT NULL,
	key       BYTEA  NOT NULL,
	signature BYTEA  NOT NULL,
	PRIMARY KEY (username, device_id, key_id),
	FOREIGN KEY (username, device_id) REFERENCES devices (username, device_id) ON DELETE CASCADE
);

-- Message seqs come from one sequence, so they are unique in the store and
-- never reused. CACHE 1 (the default, spelled out): with a per-connection
-- cache, two connections hand out values out of time order, which would
-- break the per-device ordering Enqueue relies on (messages.go).
CREATE SEQUENCE message_seq CACHE 1;

-- Keyed by device first: Pending scans and Ack deletes one device's rows,
-- and a distributed database then keeps a device's queue together instead
-- of spreading one hot, ever-increasing key across the cluster.
CREATE TABLE messages (
	username      TEXT   NOT NULL,
	device_id     BIGINT NOT NULL,
	seq           BIGINT NOT NULL DEFAULT nextval('message_seq'),
	message_id    BYTEA  NOT NULL,
	sender        TEXT   NOT NULL,
	sender_device BIGINT NOT NULL,
	content       BYTEA  NOT NULL,
	received_ms   BIGINT NOT NULL,
	expires_ms    BIGINT NOT NULL,
	PRIMARY KEY (username, device_id, seq),
	UNIQUE (username, device_id, message_id),
	FOREIGN KEY (username, device_id) REFERENCES devices (username, device_id) ON DELETE CASCADE
);

-- DeleteExpired sweeps by expiry.
CREATE INDEX messages_by_expiry ON messages (expires_ms);
