-- Everyday messaging (issue 6, docs/protocol.md §12): replies, reactions,
-- edits, deletes, receipts and disappearing messages.

-- history.peer is a conversation key: a username, or "#" and a group id in
-- hex. author is the account that wrote the message: NULL means the peer
-- for incoming rows and this account for outgoing ones (so it is only set
-- for group messages). attachment is the wire.Attachment encoding, kept so
-- a file survives re-delivery after a crash. reply_to/reply_author name
-- the quoted message. edited_ms: when the text was last replaced (0
-- never); deleted = 1 is a tombstone whose text and attachment were erased
-- for everyone. expires_ms: when a disappearing message is erased (0
-- never). delivered_ms/read_ms: for outgoing rows, the first delivery or
-- read receipt from anyone; for incoming rows read_ms is when this account
-- sent its read receipt (or another own device did).
ALTER TABLE history ADD COLUMN author TEXT;
ALTER TABLE history ADD COLUMN attachment BLOB;
ALTER TABLE history ADD COLUMN reply_to BLOB;
ALTER TABLE history ADD COLUMN reply_author TEXT;
ALTER TABLE history ADD COLUMN edited_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE history ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE history ADD COLUMN expires_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE history ADD COLUMN delivered_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE history ADD COLUMN read_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX history_message ON history (peer, message_id);
CREATE INDEX history_expiring ON history (expires_ms) WHERE expires_ms > 0;

-- One reaction per reacting account and message; a new one replaces it.
CREATE TABLE reactions (
	peer       TEXT    NOT NULL,  -- conversation key
	message_id BLOB    NOT NULL,
	reactor    TEXT    NOT NULL,
	emoji      TEXT    NOT NULL,
	updated_ms INTEGER NOT NULL,
	PRIMARY KEY (peer, message_id, reactor)
);

-- Receipts for outgoing messages, per reading account (a group has many).
CREATE TABLE receipts (
	peer       TEXT    NOT NULL,  -- conversation key
	message_id BLOB    NOT NULL,
	reader     TEXT    NOT NULL,
	kind       INTEGER NOT NULL,  -- 1 delivered, 2 read
	at_ms      INTEGER NOT NULL,
	PRIMARY KEY (peer, message_id, reader, kind)
);

-- The disappearing-message timer of each conversation that has one.
CREATE TABLE timers (
	peer       TEXT    PRIMARY KEY,  -- conversation key
	seconds    INTEGER NOT NULL,
	updated_ms INTEGER NOT NULL
);
