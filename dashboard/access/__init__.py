"""Who may see, cancel and read the results of which accounts: grants of roles on account patterns
to Django groups (identity-provider groups are synced onto those at sign-in)."""
