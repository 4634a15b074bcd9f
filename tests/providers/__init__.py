"""The provider modules: parsing untrusted answers, deadlines, errors, the boundary."""
