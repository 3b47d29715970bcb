-- wrk script: POST a small Patient (FHIR JSON) on every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.body = '{"resourceType":"Patient","name":[{"family":"Last","given":["Load"]}],"gender":"female","birthDate":"1940-05-12"}'
-- The bearer token run.sh fetched with `navet token`.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("NAVET_TOKEN")
