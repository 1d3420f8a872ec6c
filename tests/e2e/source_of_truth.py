"""What the index must hold, stated in SQL over MariaDB independently of the viability service's
code (same rules: >= 10,000 followers, >= 20 posts, a post within 180 days, 20,000 most recent)."""

# (id, title) of every post that must be indexed
VIABLE_POSTS_SQL = """
SELECT p.id, p.title FROM (
  SELECT id, account_id, title,
         ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY published_at DESC, id DESC) AS recency
  FROM posts
) p
JOIN accounts a ON a.id = p.account_id
JOIN (SELECT account_id FROM posts GROUP BY account_id
      HAVING COUNT(*) >= 20 AND MAX(published_at) >= UTC_TIMESTAMP() - INTERVAL 180 DAY) active
  ON active.account_id = p.account_id
WHERE a.followers >= 10000 AND p.recency <= 20000
"""
