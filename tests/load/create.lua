-- wrk script: POST a small Patient (FHIR JSON) on every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.body = '{"resourceType":"Patient","name":[{"family":"Last","given":["Load"]}],"gender":"female","birthDate":"1940-05-12"}'
