-- 0001: accounts, devices, prekeys and the per-device message queue.
--
-- Plain SQL that PostgreSQL also accepts (apart from AUTOINCREMENT), so the
-- two stores keep the same shape. Times are unix milliseconds. Keys,
-- signatures, device lists and message contents are opaque bytes: the
-- server never interprets them beyond what the handlers verify.

CREATE TABLE accounts (
	username            TEXT    NOT NULL PRIMARY KEY,
	account_key         BLOB    NOT NULL,
	device_list         BLOB    NOT NULL,
	device_list_version INTEGER NOT NULL,
	created_ms          INTEGER NOT NULL
);

CREATE TABLE devices (
	username     TEXT    NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
	device_id    INTEGER NOT NULL,
	signing_key  BLOB    NOT NULL,
	identity_key BLOB    NOT NULL,
	created_ms   INTEGER NOT NULL,
	last_seen_ms INTEGER NOT NULL,
	PRIMARY KEY (username, device_id)
);

-- One current signed X25519 prekey per device, replaced on rotation.
CREATE TABLE signed_prekeys (
	username  TEXT    NOT NULL,
	device_id INTEGER NOT NULL,
	key_id    INTEGER NOT NULL,
	key       BLOB    NOT NULL,
	signature BLOB    NOT NULL,
	PRIMARY KEY (username, device_id),
	FOREIGN KEY (username, device_id) REFERENCES devices (username, device_id) ON DELETE CASCADE
);

-- One last-resort ML-KEM prekey per device, handed out (and kept) when no
-- one-time KEM key remains.
CREATE TABLE kem_last_resort_prekeys (
	username  TEXT    NOT NULL,
	device_id INTEGER NOT NULL,
	key_id    INTEGER NOT NULL,
	key       BLOB    NOT NULL,
	signature BLOB    NOT NULL,
	PRIMARY KEY (username, device_id),
	FOREIGN KEY (username, device_id) REFERENCES devices (username, device_id) ON DELETE CASCADE
);

-- One-time keys are deleted as they are handed out, so each goes to at
-- most one requester.
CREATE TABLE one_time_prekeys (
	username  TEXT    NOT NULL,
	device_id INTEGER NOT NULL,
	key_id    INTEGER NOT NULL,
	key       BLOB    NOT NULL,
	PRIMARY KEY (username, device_id, key_id),
	FOREIGN KEY (username, device_id) REFERENCES devices (username, device_id) ON DELETE CASCADE
);

CREATE TABLE kem_one_time_prekeys (
	username  TEXT    NOT NULL,
	device_id INTEGER NOT NULL,
	key_id    INTEGER NOT NULL,
	key       BLOB    NOT NULL,
	signature BLOB    NOT NULL,
	PRIMARY KEY (username, device_id, key_id),
	FOREIGN KEY (username, device_id) REFERENCES devices (username, device_id) ON DELETE CASCADE
);

-- AUTOINCREMENT so a seq is never reused, even after the newest message is
-- acked and deleted: clients and the server page through queues by seq.
CREATE TABLE messages (
	seq           INTEGER PRIMARY KEY AUTOINCREMENT,
	username      TEXT    NOT NULL,
	device_id     INTEGER NOT NULL,
	message_id    BLOB    NOT NULL,
	sender        TEXT    NOT NULL,
	sender_device INTEGER NOT NULL,
	content       BLOB    NOT NULL,
	received_ms   INTEGER NOT NULL,
	expires_ms    INTEGER NOT NULL,
	UNIQUE (username, device_id, message_id),
	FOREIGN KEY (username, device_id) REFERENCES devices (username, device_id) ON DELETE CASCADE
);

-- Pending pages through one device's queue in seq order.
CREATE INDEX messages_by_device ON messages (username, device_id, seq);
-- DeleteExpired sweeps by expiry.
CREATE INDEX messages_by_expiry ON messages (expires_ms);
