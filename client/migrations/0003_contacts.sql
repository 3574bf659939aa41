-- Contacts, message requests, blocking, trust and sealed sender (issue 5).

-- What this device knows about another account besides its keys (which
-- stay in peers): whether it is a contact, blocked or verified, its
-- delivery token, and an account key the server now shows for it that the
-- user has not accepted yet. A row exists once the account is seen.
CREATE TABLE contacts (
	username         TEXT    PRIMARY KEY,
	state            INTEGER NOT NULL DEFAULT 0, -- 0 stranger, 1 sent us a message request, 2 contact
	blocked          INTEGER NOT NULL DEFAULT 0,
	verified         INTEGER NOT NULL DEFAULT 0,
	delivery_token   BLOB,                       -- theirs, learned inside E2EE; NULL if unknown
	changed_key      BLOB,                       -- keys.AccountPublic the server shows now, not trusted yet
	changed_list     BLOB,                       -- its signed device list
	changed_verified INTEGER NOT NULL DEFAULT 0, -- the peer was verified when the change was seen
	updated_ms       INTEGER NOT NULL
);

-- Messages from accounts that are not contacts. "hush requests" shows
-- them; accepting moves them into the history, blocking deletes them.
CREATE TABLE requests (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	peer        TEXT    NOT NULL,
	message_id  BLOB    NOT NULL,
	device      INTEGER NOT NULL,
	sent_ms     INTEGER NOT NULL,
	received_ms INTEGER NOT NULL,
	body        TEXT    NOT NULL
);
CREATE INDEX requests_peer ON requests (peer, seq);

-- The account's delivery token (the same on every device of the account)
-- and what the server has been told: token_set = 1 once it stored the
-- token's hash, blocked_synced = 0 while the server lacks the current
-- blocked list. The sender certificate is this device's, cached until it
-- nears expiry.
CREATE TABLE sealed_state (
	id              INTEGER PRIMARY KEY CHECK (id = 1),
	token           BLOB    NOT NULL,
	token_set       INTEGER NOT NULL DEFAULT 0,
	blocked_synced  INTEGER NOT NULL DEFAULT 1,
	certificate     BLOB,
	cert_expires_ms INTEGER NOT NULL DEFAULT 0
);

-- A new account key made by "identity reset", kept from before the server
-- is asked to take it until this device stored it as the account key, so
-- a crash in between cannot lose the key the server now has.
CREATE TABLE pending_account_key (
	id          INTEGER PRIMARY KEY CHECK (id = 1),
	account_key BLOB    NOT NULL,  -- keys.AccountPrivate encoding
	device_list BLOB    NOT NULL   -- the list it signed
);
