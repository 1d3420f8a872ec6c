"""Small in-memory stand-ins for the state interfaces of the pure cores (unit tests only)."""

from __future__ import annotations

from shared.events import AccountRecord


class InMemoryViabilityState:
    def __init__(self) -> None:
        self.accounts: dict[int, AccountRecord] = {}
        self.posts: dict[int, dict[int, int]] = {}
        self.viable: set[int] = set()
        self.post_account: dict[int, int] = {}
        self.requested: dict[int, str | None] = {}

    def get_account(self, account_id):
        return self.accounts.get(account_id)

    def put_account(self, account):
        self.accounts[account.id] = account

    def delete_account(self, account_id):
        self.accounts.pop(account_id, None)

    def add_post(self, account_id, post_id, published_at):
        self.posts.setdefault(account_id, {})[post_id] = published_at

    def remove_post(self, account_id, post_id):
        self.posts.get(account_id, {}).pop(post_id, None)

    def post_stats(self, account_id):
        posts = self.posts.get(account_id, {})
        return len(posts), max(posts.values()) if posts else None

    def _by_recency(self, account_id):
        posts = self.posts.get(account_id, {})
        return sorted(posts, key=lambda p: (posts[p], str(p)), reverse=True)

    def recent_rank(self, account_id, post_id):
        order = self._by_recency(account_id)
        return order.index(post_id) if post_id in order else None

    def post_at_rank(self, account_id, rank):
        order = self._by_recency(account_id)
        return order[rank] if rank < len(order) else None

    def was_viable(self, account_id):
        return account_id in self.viable

    def set_viable(self, account_id, viable):
        (self.viable.add if viable else self.viable.discard)(account_id)

    def requested_in(self, account_id):
        return self.requested.get(account_id)

    def set_requested_in(self, runs):
        self.requested.update(runs)

    def post_accounts(self, post_ids):
        return {p: self.post_account[p] for p in post_ids if p in self.post_account}

    def set_post_accounts(self, updates):
        for post_id, account_id in updates.items():
            if account_id is None:
                self.post_account.pop(post_id, None)
            else:
                self.post_account[post_id] = account_id
