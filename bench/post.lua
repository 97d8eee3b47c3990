-- wrk script: POST a JSON body with the API key from the environment.
wrk.method = "POST"
wrk.body = os.getenv("BODY") or '{"esun_uuid":"bench","n":1}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = os.getenv("KEY")
