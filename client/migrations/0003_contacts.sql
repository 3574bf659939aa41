-- Contacts, message requests, blocking, trust and sealed sender (issue 5).
SELECT 1;
