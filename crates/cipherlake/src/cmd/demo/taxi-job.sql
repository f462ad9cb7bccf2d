-- NYC taxi analytics: the job the demo's driver runs as an attested workload of policy
-- taxi-demo. ${TAXI}, ${ZONES} and ${RESULTS} come from the configuration the CAS releases.
-- The trip data is encrypted Parquet (keys unwrapped by the CAS KMS); the results are written
-- as encrypted Parquet with an encrypted footer under the CAS-held master key results-key.

CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '${TAXI}';

-- The 265-row zone table, loaded into memory so that joins build their hash tables on it.
CREATE TABLE zones AS SELECT * FROM '${ZONES}';

-- Trips, revenue and tips per pickup borough.
COPY (
  SELECT z.Borough AS borough,
         count(*) AS trips,
         round(sum(t.total_amount), 2) AS revenue,
         round(sum(t.tip_amount), 2) AS tips,
         round(100 * sum(t.tip_amount) / sum(t.fare_amount), 1) AS tip_pct_of_fare
  FROM trips t JOIN zones z ON t.PULocationID = z.LocationID
  GROUP BY z.Borough
  ORDER BY trips DESC
) TO '${RESULTS}/trips_by_borough.parquet' STORED AS PARQUET
  OPTIONS ('format.crypto.factory_options.footer_key' 'results-key');

-- The busiest pickup/drop-off zone pairs (aggregated by zone id, named afterwards).
COPY (
  SELECT pz.Zone AS pickup_zone,
         dz.Zone AS dropoff_zone,
         p.trips,
         p.avg_miles,
         p.avg_total
  FROM (
    SELECT PULocationID, DOLocationID,
           count(*) AS trips,
           round(avg(trip_distance), 2) AS avg_miles,
           round(avg(total_amount), 2) AS avg_total
    FROM trips
    GROUP BY PULocationID, DOLocationID
    ORDER BY trips DESC, PULocationID, DOLocationID
    LIMIT 20
  ) p
  JOIN zones pz ON p.PULocationID = pz.LocationID
  JOIN zones dz ON p.DOLocationID = dz.LocationID
  ORDER BY p.trips DESC, pickup_zone, dropoff_zone
) TO '${RESULTS}/busiest_pairs.parquet' STORED AS PARQUET
  OPTIONS ('format.crypto.factory_options.footer_key' 'results-key');
