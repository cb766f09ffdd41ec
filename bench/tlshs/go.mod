module tlshs

go 1.20
