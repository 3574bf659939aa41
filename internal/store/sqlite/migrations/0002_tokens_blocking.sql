-- 0002: delivery tokens (sealed sender) and blocked lists (docs/protocol.md
-- §9.8, §9.11).
--
-- Only the SHA-256 of an account's delivery token is kept: a database
-- thief cannot use it to send sealed messages. Empty means not set yet.
-- Nothing here links a sealed message to its sender: sealed rows in
-- messages have an empty sender and sender_device 0.

ALTER TABLE accounts ADD COLUMN delivery_token_hash BLOB NOT NULL DEFAULT x'';

-- The usernames an account refuses authenticated messages from. A blocked
-- name need not exist (yet); it is stored as the client normalized it.
CREATE TABLE blocked (
	username TEXT NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
	blocked  TEXT NOT NULL,
	PRIMARY KEY (username, blocked)
);
