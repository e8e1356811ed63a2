# Defined beside AccountReference (which raises it) so every layer can name it.
from app.core.accounts import CustomerNotFound as CustomerNotFound
