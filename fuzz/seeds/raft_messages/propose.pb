
}{"type":"acquire_lease","member":"m1","expected":{"epoch":0,"revision":0},"ttl_ms":30000,"reason":"bootstrap","at_unix_ms":1}