-- 014_one_claim_index: generations_claim_fair (009) begins with the
-- columns of generations_claim, over the same queued rows, so it serves
-- every query the older one served (claim order, queue positions, counts),
-- and each queued row no longer takes an entry in both.
DROP INDEX generations_claim;
