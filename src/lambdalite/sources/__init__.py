"""Model sources: a reference (zoo name, path, https://, s3://) becomes a local bundle directory.

`references` resolves; `remote` downloads into the cache (`https`, `s3` open the streams);
`plain` makes a plain model archive (a model file and its labels) a bundle; `zoo` knows the
zoo's names.
"""
