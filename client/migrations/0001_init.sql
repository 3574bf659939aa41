-- The device's own account and long-term keys. One home holds one device,
-- so there is at most one row. Private keys are kept here because this is
-- the user's own device; the file is created 0600 inside a 0700 directory.
CREATE TABLE account (
	id             INTEGER PRIMARY KEY CHECK (id = 1),
	username       TEXT    NOT NULL,
	device_id      INTEGER NOT NULL,
	server_url     TEXT    NOT NULL,
	server_key     BLOB    NOT NULL,  -- keys.ServerPublic encoding, pinned at registration
	account_key    BLOB    NOT NULL,  -- keys.AccountPrivate encoding
	signing_key    BLOB    NOT NULL,  -- keys.DeviceSigningPrivate encoding
	identity_key   BLOB    NOT NULL,  -- keys.IdentityPrivate encoding
	device_list    BLOB    NOT NULL,  -- identity.SignedDeviceList encoding
	next_prekey_id INTEGER NOT NULL,
	registered     INTEGER NOT NULL,  -- 0 until the server accepted the registration
	created_ms     INTEGER NOT NULL
);

-- Prekey private halves. One-time keys are deleted in the same transaction
-- that saves the session they created.
CREATE TABLE signed_prekeys (
	id         INTEGER PRIMARY KEY,
	private    BLOB    NOT NULL,
	created_ms INTEGER NOT NULL
);
CREATE TABLE one_time_prekeys (
	id      INTEGER PRIMARY KEY,
	private BLOB    NOT NULL
);
CREATE TABLE kem_prekeys (
	id          INTEGER PRIMARY KEY,
	private     BLOB    NOT NULL,
	last_resort INTEGER NOT NULL
);

-- Ratchet state per peer device (ratchet.Record encoding).
CREATE TABLE sessions (
	peer   TEXT    NOT NULL,
	device INTEGER NOT NULL,
	record BLOB    NOT NULL,
	PRIMARY KEY (peer, device)
);

-- Accounts we have talked to: the account key seen first (trust on first
-- use) and the newest verified device list, to refuse rollbacks.
CREATE TABLE peers (
	username    TEXT    PRIMARY KEY,
	account_key BLOB    NOT NULL,
	device_list BLOB    NOT NULL,
	version     INTEGER NOT NULL,
	updated_ms  INTEGER NOT NULL
);

-- Conversation history. For incoming rows, state 0 means the application
-- has not been handed the message yet (it is re-delivered by the next
-- Receive); 1 means it has. For outgoing rows: 0 queued, 1 stored by the
-- server, 2 failed.
CREATE TABLE history (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	peer        TEXT    NOT NULL,
	outgoing    INTEGER NOT NULL,
	message_id  BLOB    NOT NULL,
	device      INTEGER NOT NULL,
	sent_ms     INTEGER NOT NULL,
	received_ms INTEGER NOT NULL,
	body        TEXT    NOT NULL,
	state       INTEGER NOT NULL
);
CREATE INDEX history_peer ON history (peer, seq);
CREATE INDEX history_undelivered ON history (state) WHERE outgoing = 0 AND state = 0;

-- Message ids already processed (decrypted or dropped), per sender device,
-- so a re-sent envelope is acked again and never shown twice.
CREATE TABLE seen (
	sender      TEXT    NOT NULL,
	device      INTEGER NOT NULL,
	message_id  BLOB    NOT NULL,
	received_ms INTEGER NOT NULL,
	PRIMARY KEY (sender, device, message_id)
);
CREATE INDEX seen_received ON seen (received_ms);

-- Messages not yet stored by the server. content is the padded
-- wire.Content plaintext, kept so copies for newly listed devices can be
-- encrypted; outbox_copies holds ciphertexts already made, committed with
-- the ratchet state that made them, so a retry resends identical bytes.
CREATE TABLE outbox (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	message_id BLOB    NOT NULL UNIQUE,
	recipient  TEXT    NOT NULL,
	content    BLOB    NOT NULL,
	created_ms INTEGER NOT NULL
);
CREATE TABLE outbox_copies (
	message_id BLOB    NOT NULL REFERENCES outbox (message_id) ON DELETE CASCADE,
	device     INTEGER NOT NULL,
	content    BLOB    NOT NULL,
	PRIMARY KEY (message_id, device)
);
