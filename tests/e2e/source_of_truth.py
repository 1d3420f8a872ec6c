"""What the index must hold, stated in SQL over MariaDB independently of the viability service's
code (same rules: >= 10,000 followers, >= 20 posts, a post within 180 days, 20,000 most recent)."""


def viable_posts_sql(min_followers: int = 10_000) -> str:
    """(id, title) of every post that must be indexed; ``min_followers`` for a replay with a changed rule."""
    return f"""
SELECT p.id, p.title FROM (
  SELECT id, account_id, title,
         ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY published_at DESC, id DESC) AS recency
  FROM posts
) p
JOIN accounts a ON a.id = p.account_id
JOIN (SELECT account_id FROM posts GROUP BY account_id
      HAVING COUNT(*) >= 20 AND MAX(published_at) >= UTC_TIMESTAMP() - INTERVAL 180 DAY) active
  ON active.account_id = p.account_id
WHERE a.followers >= {int(min_followers)} AND p.recency <= 20000
"""


# (id, title) of every post that must be indexed
VIABLE_POSTS_SQL = viable_posts_sql()
