-- Linked devices, sync copies and recovery (issue 5).
SELECT 1;
