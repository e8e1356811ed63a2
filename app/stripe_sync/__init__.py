"""Operations across domains that keep us in line with Stripe: `billing reconcile` (catch up
on missed events, find drift, repair it), its nightly run, and `billing import-stripe`
(adopting the old module's customers). Above the domains and the webhooks: it reads and
repairs through their services."""
