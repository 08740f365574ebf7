"""Layer `store`: a built study on disk and in its database.

Holds the SQLAlchemy schema and engine (`database`), the built study read back once (`built_study`),
who a participant is (`identity`: ids, signed links, resume credentials) and erasure. May import:
`study.protocol`, `study.images`. Never imports torch.
"""
