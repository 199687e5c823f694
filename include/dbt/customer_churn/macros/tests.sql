{# Fails for every key that appears more than once within one snapshot_date. #}
{% test asgard_unique_per_snapshot(model, key) %}
select snapshot_date, {{ key }}, count(*) as copies
from {{ model }}
group by snapshot_date, {{ key }}
having count(*) > 1
{% endtest %}
