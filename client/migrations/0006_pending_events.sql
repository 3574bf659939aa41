-- Conversation events (reactions, edits, deletes, receipts, timer changes)
-- committed by a receive but not yet handed to the application. A crash in
-- between leaves them here and the next Receive hands them over, as it
-- does for messages (history.unshown); the row is deleted once handed
-- over. event is the JSON of client/pendingevents.go's storedEvent; peer
-- and target (the message the event is about, if one) let the sweep of
-- disappearing messages erase it with its message.
CREATE TABLE pending_events (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	peer   TEXT NOT NULL,  -- conversation key
	target BLOB,
	event  BLOB NOT NULL
);
